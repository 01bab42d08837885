"""Personal data never reaches Kafka: `redact_payload` removes personal-data keys at any depth,
including inside JSON documents carried as strings (TMC content, Douyin data, PDD content).
(Moved here from tests/unit/test_connectors_fuzz.py, which this suite supersedes.)"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connectors.base import is_personal_key, redact_payload
from tests.fuzz.hostile import fewer

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "0", "{", "[]", '{"a":1}', "WAIT_BUYER_PAY"]),
)
pii_keys = st.sampled_from(["buyer_nick", "receiver_mobile", "consigneeInfo", "post_tel", "id_card_num", "tid", "num", "sku_id"])
pii_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(pii_keys | st.text(max_size=8), children, max_size=4)
        | st.dictionaries(pii_keys, children, max_size=3).map(lambda d: " " + json.dumps(d, ensure_ascii=False))
    ),
    max_leaves=20,
)


def _personal_keys_anywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return any((isinstance(k, str) and is_personal_key(k)) or _personal_keys_anywhere(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_personal_keys_anywhere(v) for v in value)
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return _personal_keys_anywhere(json.loads(value))
        except (ValueError, RecursionError):
            return False
    return False


@fewer(10)
@given(doc=pii_json)
def test_redaction_removes_personal_keys_at_any_depth(doc: Any) -> None:
    stripped = json.loads(redact_payload(json.dumps(doc, ensure_ascii=False).encode()))
    assert not _personal_keys_anywhere(stripped)
