"""The normalizer (streams/normalize.py) on ingest batches where valid orders and warehouse
documents are interleaved with hostile records: every platform's payloads type-confused,
truncated, byte-flipped, random; other platforms' payloads; records of unknown topics; empty
values and missing keys; later, mutated versions of the valid orders themselves (so parseable
nonsense meets existing order state). And ingest batches that are not Avro at all.

Properties: `process` never raises (an exception would stop the partition's agent); every record
a parser rejects is in quarantine with that parser's reason code, under its own source offset;
every quarantine record carries a documented reason code and a readable reason; the valid records
yield exactly the movements they yield in a batch of their own.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any, Mapping, Optional

from hypothesis import example, given
from hypothesis import strategies as st

from connectors import douyin, jd, pdd, tmall, warehouse
from connectors.base import Rejected
from connectors.simulated import example_order
from schemas import codec
from schemas.batches import decode_movements, encode_ingest
from stockstream.core.model import LineStatus
from stockstream.settings import Settings
from streams.normalize import MALFORMED_BATCH, UNKNOWN_SOURCE, UNMAPPED_SKU, IdentityCatalog, Normalizer
from tests.fuzz.hostile import (
    FAMILIES,
    FUZZ,
    PARSER_REASONS,
    PARSERS,
    _warehouse_events,
    confusers,
    fewer,
    flip,
    hostile_payload,
    mutate,
    parser_of,
    truncate,
)

QUARANTINE_REASONS = PARSER_REASONS | {UNMAPPED_SKU, UNKNOWN_SOURCE}
INGEST_PARTITION = 0


class DictStore(dict):
    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value


def _good_payloads() -> list[tuple[str, str, bytes]]:
    """(parser name, kind, payload): valid orders (ids distinct from the hostile corpus) and documents."""
    seq = 100  # example_order ids of seq 100 never occur among the hostile payloads (seq 0)
    dumps = lambda doc: json.dumps(doc, ensure_ascii=False).encode()  # noqa: E731
    return [
        ("tmall", "fullinfo", dumps(tmall.fullinfo_response(example_order("tmall", LineStatus.PAID, seq=seq)))),
        ("jd", "order", dumps(jd.search_order(example_order("jd", LineStatus.PAID, seq=seq)))),
        ("douyin", "detail", dumps(douyin.order_detail_response(example_order("douyin", LineStatus.PAID, seq=seq)))),
        ("pdd", "order", dumps(pdd.order_information_response(example_order("pdd", LineStatus.SHIPPED, seq=seq, shipped=True)))),
        ("warehouse-csv", "csv", warehouse.csv_payload(_warehouse_events("GRN-A"))),
        ("warehouse-json", "json", warehouse.json_document(_warehouse_events("GRN-B"))),
    ]


GOOD = _good_payloads()
NORMALIZER = Normalizer(Settings(partitions=4), IdentityCatalog())


def topic_of(name: str) -> str:
    return "raw." + name.split("-")[0]


def text_headers(headers: Optional[Mapping[str, Any]]) -> dict[str, str]:
    """Kafka headers as the ingest batcher hands them on: strings, undecodable bytes replaced."""
    out: dict[str, str] = {}
    for k, v in (headers or {}).items():
        if v is None:
            continue
        out[k] = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    return out


def raw(topic: str, offset: int, key: Optional[bytes], value: bytes, headers: dict[str, str]) -> dict:
    return {"topic": topic, "partition": 3, "offset": offset, "timestamp_ms": 1_731_254_400_000, "key": key, "value": value, "headers": headers}


def hostile_record(rnd: random.Random, extra: Any, offset: int) -> tuple[dict, Optional[str]]:
    """A hostile raw record and the parser that reads it (None: no parser, an unknown topic)."""
    roll = rnd.random()
    if roll < 0.05:
        return raw(rnd.choice(["raw.unknown", "raw.", "", "ingest", "raw.tmall2"]), offset, b"k", b"{}", {}), None
    name = rnd.choice(PARSERS)
    if roll < 0.1:  # empty value, no key, no headers at all
        return raw(topic_of(name), offset, rnd.choice([None, b"", b"\xff"]), b"", {}), name
    payload, headers = hostile_payload(name, rnd.choice(FAMILIES), rnd, extra)
    return raw(topic_of(name), offset, rnd.choice([b"order-1", None, b"\xff\xfe", b"x" * 300]), payload, text_headers(headers)), name


def mutated_good(name: str, kind: str, payload: bytes, rnd: random.Random, extra: Any, offset: int) -> dict:
    """The same order or document again, mutated: parseable nonsense meets existing state."""
    if name == "warehouse-csv":
        value = flip(payload, rnd) if rnd.random() < 0.5 else truncate(payload, rnd)
    else:
        value = json.dumps(mutate(json.loads(payload), rnd, extra, rate=0.05), ensure_ascii=False).encode("utf-8", "surrogatepass")
    return raw(topic_of(name), offset, b"order", value, {"kind": kind, "shop": "s1"})


def movements_of(output) -> list:
    return [m for _partition, batch in output.movement_batches for m in decode_movements(batch)]


def _alone(i: int) -> list:
    """The movements GOOD[i] yields in a batch of its own, origin aside (the orders and documents
    of GOOD are distinct, so each one's movements do not depend on the others)."""
    name, kind, payload = GOOD[i]
    output = NORMALIZER.process(encode_ingest([raw(topic_of(name), 0, b"order", payload, {"kind": kind, "shop": "s1"})]), INGEST_PARTITION, DictStore())
    movements = sorted((replace(m, origin=None) for m in movements_of(output)), key=repr)
    assert movements, GOOD[i]
    return movements


ALONE = {i: _alone(i) for i in range(len(GOOD))}


@FUZZ
@given(seed=st.integers(0, 2**32 - 1), extra=confusers)
# Finding: a lone surrogate escape ("\ud800") in an id or merchant code parsed, and the movement id
# built from it raised UnicodeEncodeError inside `process`, stopping the partition. Seed 19 hits it
# (found as a PDD outer_id); such payloads are now rejected as bad_json.
@example(seed=19, extra=None).via("a lone surrogate escape reaching a movement id or Avro string")
def test_normalizer_quarantines_hostile_records_and_keeps_valid_ones(seed: int, extra: Any) -> None:
    rnd = random.Random(seed)
    # which valid records take part comes from the seed too: hypothesis draws cost more than a batch
    goods = set(rnd.sample(range(len(GOOD)), rnd.randint(1, len(GOOD))))
    records: list[dict] = []
    readers: dict[int, Optional[str]] = {}  # offset -> parser of a hostile record
    good_offsets: set[int] = set()
    good_index: dict[int, int] = {}  # offset -> index into GOOD

    def hostile(n: int) -> None:
        for _ in range(n):
            record, name = hostile_record(rnd, extra, len(records))
            readers[record["offset"]] = name
            records.append(record)

    for i in sorted(goods):
        hostile(rnd.randint(0, 3))
        name, kind, payload = GOOD[i]
        good_offsets.add(len(records))
        good_index[len(records)] = i
        records.append(raw(topic_of(name), len(records), b"order", payload, {"kind": kind, "shop": "s1"}))
        if rnd.random() < 0.3:  # after the valid record only: before it, it could change its meaning
            record = mutated_good(name, kind, payload, rnd, extra, len(records))
            readers[record["offset"]] = name
            records.append(record)
    hostile(rnd.randint(0, 3))

    output = NORMALIZER.process(encode_ingest(records), INGEST_PARTITION, DictStore())

    quarantined = [codec.decode(value) for _key, value in output.quarantined]
    for q in quarantined:
        assert q["reason_code"] in QUARANTINE_REASONS, q
        assert q["reason"].strip(), q
        assert q["source_offset"] not in good_offsets, q
    reasons_at = {}
    for q in quarantined:
        reasons_at.setdefault(q["source_offset"], set()).add(q["reason_code"])
    for offset, name in readers.items():
        record = records[offset]
        if name is None:
            assert reasons_at.get(offset) == {UNKNOWN_SOURCE}, record
            continue
        outcome = parser_of(name)(record["value"], record["headers"])
        if isinstance(outcome, Rejected):
            assert reasons_at.get(offset) == {outcome.reason_code}, (record, outcome)

    got: dict[int, list] = {}
    for m in movements_of(output):
        if m.origin.offset in good_offsets:
            got.setdefault(good_index[m.origin.offset], []).append(replace(m, origin=None))
    assert {i: sorted(ms, key=repr) for i, ms in got.items()} == {i: ALONE[i] for i in goods}


def _valid_batch() -> bytes:
    return encode_ingest([raw(topic_of(name), i, b"order", payload, {"kind": kind}) for i, (name, kind, payload) in enumerate(GOOD)])


VALID_BATCH = _valid_batch()


@fewer(4)  # the codec's own tests cover Avro; 2,500 here check the normalizer's handling of it
@given(seed=st.integers(0, 2**32 - 1), how=st.sampled_from(["truncated", "flipped", "random", "body"]))
def test_malformed_ingest_batches_are_quarantined_whole(seed: int, how: str) -> None:
    """A batch that is not a readable IngestBatch (a bug or a foreign producer on `ingest`) is
    quarantined as one record; one that still decodes is processed like any other."""
    rnd = random.Random(seed)
    if how == "truncated":
        value = truncate(VALID_BATCH, rnd)
    elif how == "flipped":
        value = VALID_BATCH[:10] + flip(VALID_BATCH[10:], rnd)  # header intact: the body is read
    elif how == "body":  # header intact, body random
        value = VALID_BATCH[:10] + rnd.randbytes(rnd.randint(0, 2000))
    else:
        value = rnd.randbytes(rnd.randint(0, 2000))
    output = NORMALIZER.process(value, INGEST_PARTITION, DictStore())
    quarantined = [codec.decode(v) for _k, v in output.quarantined]
    if any(q["reason_code"] == MALFORMED_BATCH for q in quarantined):
        assert len(quarantined) == 1 and quarantined[0]["value"] == value and quarantined[0]["reason"].strip()
        assert not output.movement_batches
    for q in quarantined:
        assert q["reason_code"] in QUARANTINE_REASONS | {MALFORMED_BATCH}, q
