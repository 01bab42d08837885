"""Every platform parser (Tmall, JD, Douyin, PDD, warehouse CSV and JSON) against hostile input:
type-confused versions of real payloads, truncated and byte-flipped payloads, random bytes and
random JSON, NaN / Infinity / 1e999 / 5,000-digit tokens, other platforms' payloads, wrong headers.

Parsing is total (connectors/base.py): each input gives well-formed canonical updates or a
`Rejected` whose reason code is one of the documented set, never an exception and never
`parser_error` (a bug that reached the catch-all). A valid payload parsed right after a hostile
one gives exactly what it gives alone (no state leaks between payloads).
"""

from __future__ import annotations

import json
import random
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from connectors import base, pdd
from connectors.base import Rejected
from connectors.simulated import example_order
from stockstream.core.model import LineStatus
from tests.fuzz.hostile import CORPUS, FAMILIES, FUZZ, PARSERS, check_outcome, fewer, hostile_payload, parser_of, random_confuser

# What each valid payload parses to, computed once: the "valid traffic in between" oracle.
BASELINE = {name: [(kind, payload, parser_of(name)(payload, {"kind": kind, "shop": "s1"})) for kind, payload in CORPUS[name]] for name in PARSERS}


def test_corpus_is_valid() -> None:
    """Mutations start from payloads that parse; otherwise they would explore rejections only."""
    for name, entries in BASELINE.items():
        for kind, _payload, outcome in entries:
            assert isinstance(outcome, tuple) and outcome, (name, kind, outcome)


@pytest.mark.parametrize("name", PARSERS)
@FUZZ
@given(seed=st.integers(0, 2**32 - 1))
def test_parser_survives_hostile_payloads(name: str, seed: int) -> None:
    # Everything comes from the seed: each hypothesis draw costs more than a parse, and 10,000
    # examples for six parsers must fit in CI's time.
    rnd = random.Random(seed)
    parse = parser_of(name)
    payload, headers = hostile_payload(name, rnd.choice(FAMILIES), rnd, random_confuser(rnd))
    check_outcome(name, parse(payload, headers))
    kind, valid, expected = rnd.choice(BASELINE[name])
    assert parse(valid, {"kind": kind, "shop": "s1"}) == expected


# Finding (fixed in connectors/base.py loads_json): a lone UTF-16 surrogate escape such as "\ud800"
# is valid JSON syntax; it parsed into an id or merchant code that cannot be encoded as UTF-8, and
# the normalizer raised UnicodeEncodeError building a movement id, which stopped the partition.
_PDD_SURROGATE = json.dumps(pdd.order_information_response(example_order("pdd", LineStatus.PAID))).replace('"MC-001"', '"\\ud800"', 1)


@pytest.mark.parametrize("name", [p for p in PARSERS if p != "warehouse-csv"])
@fewer(20)
@given(seed=st.integers(0, 2**32 - 1), unit=st.integers(0xD800, 0xDFFF), nested=st.booleans())
@example(seed=0, unit=0xD800, nested=False).via("the PDD outer_id the normalizer fuzz found")
def test_lone_surrogate_escapes_are_rejected(name: str, seed: int, unit: int, nested: bool) -> None:
    rnd = random.Random(seed)
    kind, valid = rnd.choice(CORPUS[name])
    text = valid.decode()
    if name == "pdd" and seed == 0:
        text = _PDD_SURROGATE
    else:
        starts = [m.end() for m in re.finditer(r':\s*"', text)]  # just inside a string value
        escape = "\\\\u%04x" if nested else "\\u%04x"  # inside a JSON-in-a-string (TMC content, Douyin data) or not
        at = rnd.choice(starts)
        text = text[:at] + escape % unit + text[at:]
    outcome = parser_of(name)(text.encode(), {"kind": kind, "shop": "s1"})
    check_outcome(name, outcome)
    if not nested:
        assert isinstance(outcome, Rejected) and outcome.reason_code == base.BAD_JSON, outcome
    # a surrogate pair (an escaped emoji) is fine text
    assert base.loads_json('"\\ud83d\\ude00"') == "\U0001F600"
