from stockstream.cli import main

main()
