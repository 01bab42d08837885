from streams.partitioning import partition_for


def test_matches_the_java_clients_default_partitioner():
    # Partitions the Java producer picks for these keys over 1000 partitions.
    expected = {b"": 681, b"a": 524, b"ab": 434, b"abc": 107, b"123456789": 566, b"\x00 ": 742}
    assert {key: partition_for(key, 1000) for key in expected} == expected


def test_spreads_keys():
    counts = [0] * 4
    for i in range(1000):
        counts[partition_for(f"sku-{i}".encode(), 4)] += 1
    assert all(count > 150 for count in counts)
