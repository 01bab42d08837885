"""Hostile input for the fuzz suite (this module holds no tests): the hypothesis profile, a corpus
of valid payloads per parser, and cheap generators of malformed, truncated, type-confused and
random payloads derived from them.

Generation is driven by a seed hypothesis draws, not by hypothesis strategies for whole documents:
a recursive JSON strategy costs ~3 ms per example and every draw ~0.3 ms (more on a loaded box),
which would make 10,000 examples per parser take minutes. A failing example still reproduces
(hypothesis prints the seed; `@example(seed=...)` pins it), it just does not shrink well.

`STOCKSTREAM_FUZZ_EXAMPLES` lowers (or raises) the number of examples of every fuzz test; CI runs
the default, 10,000.
"""

from __future__ import annotations

import json
import os
import random
from typing import Any, Callable, Mapping, Optional

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from connectors import base, douyin, jd, pdd, tmall, warehouse
from connectors.base import Rejected
from connectors.simulated import example_order
from stockstream.core.model import LineStatus, OrderUpdate, WarehouseEvent, WarehouseEventType

# --------------------------------------------------------------------------------------------
# The profile

PROFILE = "stockstream-fuzz"
EXAMPLES = int(os.environ.get("STOCKSTREAM_FUZZ_EXAMPLES", "10000"))
settings.register_profile(
    PROFILE,
    max_examples=EXAMPLES,
    deadline=None,
    # the seed-driven generators draw few, cheap values; hypothesis' data-size heuristics do not apply
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
FUZZ = settings(settings.get_profile(PROFILE))


def fewer(divisor: int) -> settings:
    """The profile with 1/divisor of its examples (oversized payloads, whole HTTP round trips)."""
    return settings(FUZZ, max_examples=max(EXAMPLES // divisor, 1))


# --------------------------------------------------------------------------------------------
# Outcomes

# Every documented reason code of the parsers except parser_error (a parser bug that reached the
# catch-all: a finding, never an acceptable outcome).
PARSER_REASONS = frozenset(
    {
        base.BAD_ENCODING, base.BAD_JSON, base.TOO_LARGE, base.WRONG_SHAPE, base.UNKNOWN_KIND, base.MISSING_FIELD,
        base.WRONG_TYPE, base.BAD_ID, base.BAD_QUANTITY, base.BAD_TIME, base.UNKNOWN_STATUS, base.MISSING_SHOP,
        base.DUPLICATE_LINE, base.PLATFORM_ERROR,
    }
)
MIN_MS, MAX_MS = 946_684_800_000, 4_102_444_800_000


def check_rejected(outcome: Rejected) -> None:
    assert outcome.reason_code in PARSER_REASONS, outcome
    assert isinstance(outcome.reason, str) and outcome.reason.strip(), outcome


def check_order_outcome(platform: str, outcome: object) -> None:
    """A `Rejected` with a documented reason, or well-formed canonical updates."""
    if isinstance(outcome, Rejected):
        check_rejected(outcome)
        return
    assert isinstance(outcome, tuple), outcome
    for update in outcome:
        assert isinstance(update, OrderUpdate)
        assert update.platform == platform
        assert isinstance(update.order_id, str) and update.order_id
        assert isinstance(update.shop_id, str) and update.shop_id
        assert type(update.modified_ms) is int and MIN_MS <= update.modified_ms < MAX_MS
        assert isinstance(update.lines, tuple)
        assert update.lines or update.status is not None
        assert update.status is None or (isinstance(update.status, LineStatus) and isinstance(update.shipped, bool))
        ids = [line.line_id for line in update.lines]
        assert len(ids) == len(set(ids))
        for line in update.lines:
            assert isinstance(line.line_id, str) and line.line_id
            assert isinstance(line.status, LineStatus) and isinstance(line.shipped, bool)
            assert line.quantity is None or (type(line.quantity) is int and 1 <= line.quantity <= 1_000_000)
            assert line.platform_sku_id is None or (isinstance(line.platform_sku_id, str) and line.platform_sku_id)
            assert line.merchant_code is None or isinstance(line.merchant_code, str)
            assert line.shipped_ms is None or (type(line.shipped_ms) is int and MIN_MS <= line.shipped_ms < MAX_MS)
            if update.snapshot:
                assert line.quantity is not None and line.platform_sku_id is not None


def check_warehouse_outcome(outcome: object) -> None:
    if isinstance(outcome, Rejected):
        check_rejected(outcome)
        return
    assert isinstance(outcome, tuple), outcome
    for e in outcome:
        assert isinstance(e, WarehouseEvent)
        assert isinstance(e.event_type, WarehouseEventType)
        assert e.document_id and e.location and e.sku
        assert type(e.quantity) is int and abs(e.quantity) <= 10**12
        assert type(e.line_no) is int and e.line_no >= 1
        assert type(e.event_time_ms) is int and MIN_MS <= e.event_time_ms < MAX_MS


# --------------------------------------------------------------------------------------------
# Valid corpus: (kind header, payload bytes) per parser


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def _order_docs(platform: str, seq: int = 0) -> list[tuple[str, Any]]:
    """(kind, document) for every payload kind of a platform over a spread of statuses."""
    docs: list[tuple[str, Any]] = []
    for status in LineStatus:
        if platform == "tmall":
            o = example_order("tmall", status, seq=seq, shipped=True)
            docs.append(("fullinfo", tmall.fullinfo_response(o)))
            docs.append(("tmc", tmall.tmc_message(o, "taobao_trade_TradeBuyerPay", 2215004180128620412, o.lines[0])))
            docs.append(("tmc", tmall.tmc_message(o, "taobao_refund_RefundSuccess", 7, o.lines[1])))
            # An oid-less TRADE_CLOSED means nothing on its own (the fullinfo decides): the line's does.
            docs.append(("tmc", tmall.tmc_message(o, "taobao_trade_TradeClose", 8, None if status != LineStatus.CLOSED else o.lines[0])))
        elif platform == "douyin":
            o = example_order("douyin", status, seq=seq, shipped=True)
            docs.append(("detail", douyin.order_detail_response(o)))
            docs.append(("push", douyin.push_message(o, "102", "7000000000000000001")))
            docs.append(("push", [douyin.push_message(o, "206", "m2", [o.lines[0]]), douyin.push_message(o, "101", "m3")]))
        elif status != LineStatus.CREATED:
            if platform == "jd":
                o = example_order("jd", status, seq=seq, shipped=True)
                docs.append(("order", jd.search_order(o)))
                docs.append(("search", jd.search_response([jd.search_order(o)])))
            else:
                o = example_order("pdd", status, seq=seq, shipped=True)
                docs.append(("order", pdd.order_information_response(o)))
                docs.append(("frame", pdd.ws_frame(o, "pdd_trade_TradeSellerShip", 1001)))
    return docs


def _warehouse_events(doc_id: str) -> list[WarehouseEvent]:
    t = 1_731_254_400_000
    return [
        WarehouseEvent(WarehouseEventType.RECEIPT, doc_id, 1, "HZ-FTZ-01", "MC-001", 500, t, reason="GRN"),
        WarehouseEvent(WarehouseEventType.RECEIPT, doc_id, 2, "HZ-FTZ-01", "MC-002", 300, t),
    ]


WAREHOUSE_CSV_EXTRA = (
    b"event_type,document_id,line_no,location,sku,quantity,event_time,counterpart_location,reason,result\r\n"
    b"TRANSFER_OUT,TO-1,1,HZ,SKU-1,10,2024-11-11T00:00:00+08:00,SH,,\r\n"
    b"RETURN_INSPECTED,RI-1,1,HZ,SKU-3,1,1731254400000,,sealed,restocked\r\n"
    b"ADJUSTMENT,ADJ-9,1,HZ,SKU-4,-3,2024-11-11T00:00:00Z,,found,\r\n"
)
WAREHOUSE_JSON_EXTRA = {
    "document_id": "ADJ-1", "type": "ADJUSTMENT", "location": "HZ", "event_time": "2024-11-11T00:00:00Z",
    "lines": [{"line_no": 1, "sku": "A", "quantity": -2}, {"sku": "B", "quantity": "3", "reason": "found"}],
}


def _corpus() -> dict[str, list[tuple[str, bytes]]]:
    out: dict[str, list[tuple[str, bytes]]] = {}
    for platform in ("tmall", "jd", "douyin", "pdd"):
        out[platform] = [(kind, _dumps(doc)) for kind, doc in _order_docs(platform)]
    out["warehouse-csv"] = [
        ("csv", warehouse.csv_payload(_warehouse_events("GRN-1"))),
        ("csv", warehouse.csv_payload(_warehouse_events("GRN-2"), bom=True)),
        ("csv", WAREHOUSE_CSV_EXTRA),
    ]
    out["warehouse-json"] = [("json", warehouse.json_document(_warehouse_events("GRN-3"))), ("json", _dumps(WAREHOUSE_JSON_EXTRA))]
    return out


CORPUS = _corpus()
PARSERS = tuple(CORPUS)  # tmall, jd, douyin, pdd, warehouse-csv, warehouse-json


def parser_of(name: str) -> Callable[[Any, Any], object]:
    if name.startswith("warehouse"):
        return warehouse.parse
    return {"tmall": tmall.parse, "jd": jd.parse, "douyin": douyin.parse, "pdd": pdd.parse}[name]


def check_outcome(name: str, outcome: object) -> None:
    if name.startswith("warehouse"):
        check_warehouse_outcome(outcome)
    else:
        check_order_outcome(name, outcome)


def kinds_of(name: str) -> tuple[str, ...]:
    if name.startswith("warehouse"):
        return warehouse.KINDS
    return {"tmall": tmall.KINDS, "jd": jd.KINDS, "douyin": douyin.KINDS, "pdd": pdd.KINDS}[name]


# --------------------------------------------------------------------------------------------
# Values that confuse types

HUGE_INTS = [2**63, 2**63 - 1, -(2**63) - 1, 2**64 + 1, 10**30, 10**400, -(10**30)]
NAN_LIKE = ["NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "-0", "0x10", "1_000", "１２", "٣", " 1", "1 ", "+1"]
UNICODE = ["中文", "🛒🔥", "\u0000", "\u202e", "\ufeff", "\ud7ff", "e\u0301", "a\nb", "\t", " ", "x" * 200, "\\", '"', "'"]
CONFUSERS: list[Any] = [
    None, True, False, 0, -1, 1, -5, 1.5, -0.0, 1e308, "", "0", "-1", "1.5", "1e3", "null", "true",
    [], {}, [1], [[]], {"a": 1}, {"": None}, [None], "{", "[]", "{}", '{"a":1}', "2024-11-11 00:00:00",
    "2024-02-30 00:00:00", "0000-00-00 00:00:00", "2024-11-11T00:00:00", 1731254400, 1731254400000, 17312544000000000,
    *HUGE_INTS, *NAN_LIKE, *UNICODE,
]
confusers = st.one_of(
    st.sampled_from(CONFUSERS),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(),  # NaN and infinities included: json.dumps writes them as NaN / Infinity tokens
    st.text(max_size=12),
)


def random_confuser(rnd: random.Random) -> Any:
    """What `confusers` draws, from a seed (cheaper than a hypothesis draw per example)."""
    roll = rnd.random()
    if roll < 0.4:
        return rnd.choice(CONFUSERS)
    if roll < 0.6:
        return rnd.randint(-(2**80), 2**80)
    if roll < 0.7:
        return rnd.choice([float("nan"), float("inf"), -float("inf"), rnd.uniform(-1e20, 1e20)])
    return "".join(chr(rnd.choice((rnd.randint(0, 0x7F), rnd.randint(0x80, 0xD7FF), rnd.randint(0xE000, 0x10FFFF)))) for _ in range(rnd.randint(0, 12)))


KEYS = [
    "tid", "oid", "status", "num", "orderState", "itemTotal", "tag", "p_id", "order_status", "sku_id", "skuId",
    "modified", "update_time", "item_num", "goods_count", "quantity", "line_no", "event_time", "type", "lines",
    "s_ids", "content", "data", "message", "orders", "order", "item_list", "itemInfoList", "sku_order_list", "x",
]


def mutate(value: Any, rnd: random.Random, extra: Any, rate: float = 0.08) -> Any:
    """A type-confused copy: values swapped for wrong types (huge ints, NaN-like strings, unicode,
    empty containers), keys dropped or added, values wrapped in extra nesting, lists emptied,
    shortened or repeated, nested JSON strings (TMC content, Douyin data) mutated inside."""
    roll = rnd.random()
    if roll < rate:
        return extra if rnd.random() < 0.3 else rnd.choice(CONFUSERS)
    if roll < rate * 1.4:
        return rnd.choice([[value], {"value": value}, str(value), [value, value]])  # extra nesting / stringified
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if rnd.random() < rate * 0.75:
                continue
            out[k] = mutate(v, rnd, extra, rate)
        if rnd.random() < rate * 0.5:
            out[rnd.choice(KEYS)] = rnd.choice(CONFUSERS + [extra])
        return out
    if isinstance(value, list):
        items = [mutate(v, rnd, extra, rate) for v in value if rnd.random() > rate * 0.6]
        if items and rnd.random() < rate:
            items.append(items[0])  # a line listed twice
        return items
    if isinstance(value, str) and value[:1] in "{[" and roll < 0.6:
        try:
            return json.dumps(mutate(json.loads(value), rnd, extra, rate), ensure_ascii=rnd.random() < 0.5)
        except (ValueError, RecursionError):
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and roll < 0.25:
        return rnd.choice([-value, value * 10**rnd.randint(1, 25), value + 2**63, 0, str(value)])
    if isinstance(value, str) and roll < 0.25:
        return rnd.choice([value + rnd.choice(UNICODE), value[: rnd.randint(0, len(value))], " " + value, value.upper()])
    return value


def confused_csv(data: bytes, rnd: random.Random, extra: Any) -> bytes:
    """A CSV whose cells are swapped for confusing values, rows dropped or repeated, columns added."""
    lines = data.decode("utf-8").split("\r\n")
    out = [lines[0]]
    for line in lines[1:]:
        if not line or rnd.random() < 0.05:
            continue
        cells = line.split(",")
        for i in range(len(cells)):
            if rnd.random() < 0.15:
                value = extra if rnd.random() < 0.3 else rnd.choice(CONFUSERS)
                cells[i] = '"' + str(value).replace('"', '""') + '"' if rnd.random() < 0.5 else str(value)
        if rnd.random() < 0.05:
            cells.append("extra")
        out.append(",".join(cells))
        if rnd.random() < 0.05:
            out.append(out[-1])  # a row listed twice
    return "\r\n".join(out).encode("utf-8", "surrogatepass")


def random_json(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 4 or roll < 0.45:
        return rnd.choice(CONFUSERS)
    if roll < 0.7:
        return [random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    return {rnd.choice(KEYS): random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 5))}


_PRINTABLE = "".join(chr(c) for c in range(32, 127)) + "中文店铺发货退款🛒🔥" + "{}[]\":,\\" * 4


def random_bytes(rnd: random.Random, max_size: int = 600) -> bytes:
    n = rnd.randint(0, max_size)
    roll = rnd.random()
    if roll < 0.4:
        return rnd.randbytes(n)
    if roll < 0.7:  # printable-ish: gets past the UTF-8 check more often
        return "".join(rnd.choices(_PRINTABLE, k=n)).encode()
    return rnd.choice([b"", b"{", b"[", b"null", b"0", b'""', b"{}", b"[]", b"\xef\xbb\xbf", b"\x00" * 8, b"[" * 5000, b'{"a":' * 3000])


def truncate(data: bytes, rnd: random.Random) -> bytes:
    """A prefix of a valid payload (a cut-off HTTP body), sometimes cut inside a UTF-8 sequence."""
    return data[: rnd.randrange(len(data))] if data else data


def flip(data: bytes, rnd: random.Random) -> bytes:
    """A few bytes replaced, deleted or inserted."""
    out = bytearray(data)
    for _ in range(rnd.randint(1, 6)):
        if not out:
            break
        pos = rnd.randrange(len(out))
        if rnd.random() < 0.1:  # not UTF-8 any more: rejected at the first check, so kept rare
            out[pos : pos + 1] = rnd.choice([b"\xff", b"\xe4\xb8", bytes([rnd.randrange(128, 256)])])
            continue
        out[pos : pos + rnd.randint(0, 2)] = rnd.choice(
            [b"", b",", b'"', b"\\", b"{", b"}", b"[", b"]", b"\r\n", b"\n", b"-", b"0", b"9" * 20, b" ", b"x", b":", "中".encode()]
        )
    return bytes(out)


def with_token(data: bytes, rnd: random.Random) -> bytes:
    """A JSON token swapped into the text: NaN / Infinity, 1e999, a 5,000-digit number, a duplicated key."""
    text = data.decode("utf-8", "replace")
    token = rnd.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "9" * 5000, "1" + "0" * 30, "-0", "0.0", "true", "null", '"\\ud800"'])
    colons = [i for i, c in enumerate(text) if c == ":"]
    if not colons:
        return data
    i = rnd.choice(colons) + 1
    j = i
    while j < len(text) and text[j] not in ",}]":
        j += 1
    if rnd.random() < 0.2:  # a duplicated key: the last one wins in Python's json
        k = text.rfind(",", 0, i) + 1 or text.rfind("{", 0, i) + 1
        return (text[:j] + "," + text[k:i] + token + text[j:]).encode("utf-8", "surrogatepass")
    return (text[:i] + token + text[j:]).encode("utf-8", "surrogatepass")


def headers(name: str, kind: str, rnd: random.Random) -> Mapping[str, Any]:
    """The kind and shop headers, usually right, sometimes missing, wrong or not text."""
    h: dict[str, Any] = {"kind": kind, "shop": "s1", "message-id": "m1"}
    roll = rnd.random()
    if roll < 0.1:
        h["kind"] = rnd.choice(list(kinds_of(name)) + ["", "junk", "ＣＳＶ", b"\xff\xfe", b"json", None, 7])
    elif roll < 0.2:
        del h["kind"]
    elif roll < 0.3:
        h["shop"] = rnd.choice(["", None, b"\xff", " ", "s" * 300, "中文店铺", 123])
    elif roll < 0.35:
        return rnd.choice([{}, None, {"kind": kind}])  # type: ignore[return-value]
    return h


FAMILIES = ("confused", "truncated", "bytes", "json", "flipped", "token", "foreign")


def hostile_payload(name: str, family: str, rnd: random.Random, extra: Any) -> tuple[bytes, Optional[Mapping[str, Any]]]:
    """One hostile (payload, headers) for the parser `name`."""
    kind, valid = rnd.choice(CORPUS[name])
    if family == "confused":
        if name == "warehouse-csv":
            return confused_csv(valid, rnd, extra), headers(name, kind, rnd)
        doc = mutate(json.loads(valid), rnd, extra, rate=rnd.choice((0.01, 0.03, 0.08)))
        return json.dumps(doc, ensure_ascii=rnd.random() < 0.5).encode("utf-8", "surrogatepass"), headers(name, kind, rnd)
    if family == "truncated":
        return truncate(valid, rnd), headers(name, kind, rnd)
    if family == "bytes":
        return random_bytes(rnd), headers(name, kind, rnd)
    if family == "json":
        return json.dumps(random_json(rnd)).encode(), headers(name, kind, rnd)
    if family == "flipped":
        return flip(valid, rnd), headers(name, kind, rnd)
    if family == "token":
        return with_token(valid, rnd), headers(name, kind, rnd)
    if family == "foreign":  # another parser's payload under this parser's kind header
        other = rnd.choice([p for p in PARSERS if p != name])
        return rnd.choice(CORPUS[other])[1], headers(name, kind, rnd)
    raise ValueError(family)
