"""Avro single-object encoding: marker, writer-schema fingerprint, then the Avro binary body.

https://avro.apache.org/docs/1.11.1/specification/#single-object-encoding
"""

MARKER = b"\xc3\x01"
FINGERPRINT_SIZE = 8  # CRC-64-AVRO, little-endian
HEADER_SIZE = len(MARKER) + FINGERPRINT_SIZE
