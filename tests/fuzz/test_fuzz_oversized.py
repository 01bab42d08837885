"""Oversized payloads: 1-5 MB strings in real fields, 100k-line CSVs, 100k-element line lists and
s_ids, 100k keys, nesting far deeper than the recursion limit. Each parser must answer (updates or
a documented rejection, `too_large` above `MAX_PAYLOAD_BYTES`) in time linear in the size: a parse
slower than PARSE_BUDGET_S on a few MB means a quadratic path, which one payload could use to stop
a partition.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import base, douyin, jd, pdd, tmall
from connectors.simulated import example_order
from stockstream.core.model import LineStatus
from tests.fuzz.hostile import CORPUS, PARSERS, check_outcome, fewer, parser_of

MB = 1024 * 1024
# Measured here: JSON payloads of a few MB parse in < 0.2 s; a 100k-row CSV takes 3-6 s (~40-60 us
# a row, linear). 30 s leaves room for a loaded 2-core box and still catches a quadratic path.
PARSE_BUDGET_S = 30.0
SHAPES = ("big-field", "big-key", "many-lines", "many-keys", "deep", "over-limit")


def _big_field(doc: Any, size: int, where: int) -> Any:
    """Every string field at the `where`-th position (cyclically) replaced by a `size`-char string."""
    strings: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in list(items):
            if isinstance(v, (str, int)) and not isinstance(v, bool):
                strings.append((node, k))
            walk(v)

    walk(doc)
    node, key = strings[where % len(strings)]
    char = "9" if isinstance(node[key], int) else "中x"[where % 2]
    node[key] = char * (size // len(char.encode()))
    return doc


def _many_lines(name: str, n: int) -> bytes:
    """A real payload shape with n lines / sub-orders / s_ids."""
    if name == "warehouse-csv":
        rows = "".join(f"RECEIPT,G,{i + 1},H,S{i % 9},1,1731254400000\n" for i in range(n))
        return ("event_type,document_id,line_no,location,sku,quantity,event_time\n" + rows).encode()
    if name == "warehouse-json":
        lines = [{"line_no": i + 1, "sku": f"S{i % 50}", "quantity": 1} for i in range(n)]
        return json.dumps({"document_id": "GRN-1", "type": "RECEIPT", "location": "HZ", "event_time": 1731254400000, "lines": lines}).encode()
    o = example_order(name if name != "warehouse" else "tmall", LineStatus.PAID, shipped=False)
    if name == "tmall":
        doc = tmall.fullinfo_response(o)
        sub = doc["trade_fullinfo_get_response"]["trade"]["orders"]["order"][0]
        doc["trade_fullinfo_get_response"]["trade"]["orders"]["order"] = [dict(sub, oid=10**12 + i) for i in range(n)]
    elif name == "jd":
        doc = jd.search_order(o)
        doc["itemInfoList"] = [dict(doc["itemInfoList"][0], skuId=str(10**11 + i)) for i in range(n)]
    elif name == "pdd":
        doc = pdd.order_information_response(o)
        info = doc[pdd.ORDER_RESPONSE_KEY]["order_info"]
        info["item_list"] = [dict(info["item_list"][0], sku_id=10**9 + i) for i in range(n)]
    else:
        msg = douyin.push_message(o, "101", "m1")
        data = json.loads(msg["data"])
        data["s_ids"] = [10**15 + i for i in range(n)]
        msg["data"] = json.dumps(data)
        doc = [msg] * 2
    return json.dumps(doc).encode()


def oversized(name: str, shape: str, size: int, where: int) -> bytes:
    kind, valid = CORPUS[name][where % len(CORPUS[name])]
    if shape == "deep":
        return b"[" * size if where % 2 else b'{"a":' * (size // 5) + b"1" + b"}" * (size // 5)
    if shape == "over-limit":
        return valid + b" " * (base.MAX_PAYLOAD_BYTES + 1 - len(valid) + where)
    if name == "warehouse-csv":
        if shape == "big-field":
            head, _, rest = valid.partition(b"\n")
            return head + b"\n" + rest.replace(b"GRN", b"G" * size, 1)
        if shape == "big-key":
            return valid.replace(b"reason", b"r" * size, 1)
        if shape == "many-keys":
            return b",".join(b"c%d" % i for i in range(size // 8)) + b"\n" + valid
        return _many_lines(name, lines_for(size))
    doc = json.loads(valid)
    if shape == "big-field":
        return json.dumps(_big_field(doc, size, where), ensure_ascii=False).encode()
    if shape == "big-key":
        target = doc[0] if isinstance(doc, list) else doc
        target["k" * size] = 1
        return json.dumps(doc).encode()
    if shape == "many-keys":
        target = doc[0] if isinstance(doc, list) else doc
        target.update({f"k{i}": i for i in range(100_000)})
        return json.dumps(doc).encode()
    return _many_lines(name, lines_for(size))


def lines_for(size: int) -> int:
    """20k lines for 1 MB up to 100k lines for 5 MB."""
    return 100_000 * size // (5 * MB)


@pytest.mark.parametrize("name", PARSERS)
@fewer(1000)
@given(shape=st.sampled_from(SHAPES), size=st.integers(1 * MB, 5 * MB), where=st.integers(0, 10_000))
def test_oversized_payloads_are_answered_in_linear_time(name: str, shape: str, size: int, where: int) -> None:
    payload = oversized(name, shape, size, where)
    started = time.perf_counter()
    outcome = parser_of(name)(payload, {"kind": CORPUS[name][0][0], "shop": "s1"})
    elapsed = time.perf_counter() - started
    check_outcome(name, outcome)
    if len(payload) > base.MAX_PAYLOAD_BYTES:
        assert isinstance(outcome, base.Rejected) and outcome.reason_code == base.TOO_LARGE, outcome
    assert elapsed < PARSE_BUDGET_S, f"{name} took {elapsed:.1f}s on a {shape} payload of {len(payload)} bytes"


@pytest.mark.parametrize("name", PARSERS)
def test_largest_documents_under_the_limit_parse(name: str) -> None:
    """The largest documents under the size limit (up to 100k lines) still parse, in time."""
    n = 100_000
    while len(payload := _many_lines(name, n)) > base.MAX_PAYLOAD_BYTES:
        n //= 2
    started = time.perf_counter()
    outcome = parser_of(name)(payload, {"kind": "push" if name == "douyin" else CORPUS[name][0][0], "shop": "s1"})
    elapsed = time.perf_counter() - started
    check_outcome(name, outcome)
    assert isinstance(outcome, tuple) and outcome, outcome
    assert elapsed < PARSE_BUDGET_S
