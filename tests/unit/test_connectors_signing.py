"""Request signing and timestamps, checked against the published TOP vector and against sign
strings written out by hand from marketplaces.md (independent of the code under test), plus one
pinned literal per scheme so a silent change of both is caught too."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors import douyin, jd, pdd, tmall
from connectors.registry import get_connector

# -- Taobao / Tmall ---------------------------------------------------------------------------

TOP_VECTOR = {
    "app_key": "12345678",
    "fields": "num_iid,title,nick,price,num",
    "format": "json",
    "method": "taobao.item.seller.get",
    "num_iid": "11223344",
    "session": "test",
    "sign_method": "md5",
    "timestamp": "2016-01-01 12:00:00",
    "v": "2.0",
}
TOP_CONCAT = (
    "app_key12345678fieldsnum_iid,title,nick,price,numformatjsonmethodtaobao.item.seller.get"
    "num_iid11223344sessiontestsign_method{m}timestamp2016-01-01 12:00:00v2.0"
)


def test_top_md5_published_vector() -> None:
    assert tmall.sign(TOP_VECTOR, "helloworld") == "66987CB115214E59E6EC978214934FB8"


def test_top_md5_ignores_existing_sign_and_param_order() -> None:
    shuffled = dict(reversed(list(TOP_VECTOR.items())), sign="WHATEVER")
    assert tmall.sign(shuffled, "helloworld") == "66987CB115214E59E6EC978214934FB8"


def test_top_md5_matches_documented_formula() -> None:
    expected = hashlib.md5(("helloworld" + TOP_CONCAT.format(m="md5") + "helloworld").encode()).hexdigest().upper()
    assert tmall.sign(TOP_VECTOR, "helloworld") == expected


def test_top_hmac() -> None:
    params = dict(TOP_VECTOR, sign_method="hmac")
    expected = hmac.new(b"helloworld", TOP_CONCAT.format(m="hmac").encode(), hashlib.md5).hexdigest().upper()
    assert tmall.sign(params, "helloworld") == expected == "D56D7858309C31B6251083A874D48273"


def test_top_unknown_sign_method_is_refused() -> None:
    with pytest.raises(ValueError):
        tmall.sign(dict(TOP_VECTOR, sign_method="sha1"), "helloworld")


def test_top_timestamp_is_beijing_time() -> None:
    # 2016-01-01 04:00:00 UTC
    assert tmall.timestamp(1451620800000) == "2016-01-01 12:00:00"


# -- JD ---------------------------------------------------------------------------------------

JD_PARAMS = {
    "method": "jingdong.pop.order.get",
    "app_key": "jdkey",
    "access_token": "jdtoken",
    "timestamp": "2021-05-07 09:20:39.683+0800",
    "v": "2.0",
    "sign_method": "md5",
    "360buy_param_json": '{"orderId":"301234567890"}',
}
JD_STRING = (
    "jdsecret"
    '360buy_param_json{"orderId":"301234567890"}'
    "access_tokenjdtoken"
    "app_keyjdkey"
    "methodjingdong.pop.order.get"
    "sign_methodmd5"
    "timestamp2021-05-07 09:20:39.683+0800"
    "v2.0"
    "jdsecret"
)


def test_jd_md5() -> None:
    expected = hashlib.md5(JD_STRING.encode()).hexdigest().upper()
    assert jd.sign(JD_PARAMS, "jdsecret") == expected == "A6D91D479A1C9068A983FAC0070971FD"


def test_jd_skips_empty_values() -> None:
    with_empty = dict(JD_PARAMS, format="", extra=None)
    assert jd.sign(with_empty, "jdsecret") == jd.sign(JD_PARAMS, "jdsecret")


def test_jd_timestamp_format() -> None:
    # 2021-05-07 01:20:39.683 UTC
    assert jd.timestamp(1620350439683) == "2021-05-07 09:20:39.683+0800"


# -- Douyin -----------------------------------------------------------------------------------

DD_PARAM_JSON = '{"order_id":"6920000000000000000"}'
DD_PARAMS = {
    "app_key": "ddkey",
    "method": "order.orderDetail",
    "param_json": DD_PARAM_JSON,
    "timestamp": "1731254400",
    "v": "2",
}
DD_STRING = (
    "ddsecret" + "app_keyddkey" + "methodorder.orderDetail" + "param_json" + DD_PARAM_JSON
    + "timestamp1731254400" + "v2" + "ddsecret"
)


def test_douyin_hmac_sha256() -> None:
    expected = hmac.new(b"ddsecret", DD_STRING.encode(), hashlib.sha256).hexdigest()
    got = douyin.sign(dict(DD_PARAMS, sign_method="hmac-sha256"), "ddsecret")
    assert got == expected == "736ea2908f220303f58986dccc7d23a4ba0a1400330e92678e500a50d37cbbf1"


def test_douyin_md5() -> None:
    expected = hashlib.md5(DD_STRING.encode()).hexdigest()
    assert douyin.sign(dict(DD_PARAMS, sign_method="md5"), "ddsecret") == expected == "9d118386c882ae5f21deb339b1232125"


def test_douyin_sign_covers_exactly_the_five_fields() -> None:
    # access_token and sign_method travel in the query but are not signed
    base_sig = douyin.sign(dict(DD_PARAMS, sign_method="md5"), "ddsecret")
    assert douyin.sign(dict(DD_PARAMS, sign_method="md5", access_token="t"), "ddsecret") == base_sig


def test_douyin_param_json_sorted_compact_unescaped() -> None:
    body = douyin.param_json({"z": 1, "a": {"y": "<b>&", "b": "抖音"}})
    assert body == '{"a":{"b":"抖音","y":"<b>&"},"z":1}'


def test_douyin_event_sign() -> None:
    body = b'[{"tag":"101","msg_id":"7000000000000000001","data":"{\\"p_id\\":6920000000000000000}"}]'
    expected = hashlib.md5(b"ddkey" + body + b"ddsecret").hexdigest()
    assert douyin.event_sign("ddkey", body, "ddsecret") == expected == "6e1ed9bef47b13f47f3cda2a88d6e0cd"
    assert douyin.verify_event_sign("ddkey", body, "ddsecret", expected)
    assert douyin.verify_event_sign("ddkey", body, "ddsecret", expected.upper())
    assert not douyin.verify_event_sign("ddkey", body + b" ", "ddsecret", expected)
    assert not douyin.verify_event_sign("ddkey", body, "other", expected)
    assert not douyin.verify_event_sign("ddkey", body, "ddsecret", None)


def test_douyin_timestamp_is_unix_seconds() -> None:
    assert douyin.timestamp(1731254400999) == "1731254400"


# -- PDD --------------------------------------------------------------------------------------

PDD_PARAMS = {
    "type": "pdd.order.information.get",
    "client_id": "pddclient",
    "access_token": "pddtoken",
    "timestamp": "1731254400",
    "data_type": "JSON",
    "version": "V1",
    "order_sn": "241111-339507978993455",
}
PDD_STRING = (
    "pddsecret" + "access_tokenpddtoken" + "client_idpddclient" + "data_typeJSON"
    + "order_sn241111-339507978993455" + "timestamp1731254400" + "typepdd.order.information.get"
    + "versionV1" + "pddsecret"
)


def test_pdd_md5() -> None:
    expected = hashlib.md5(PDD_STRING.encode()).hexdigest().upper()
    assert pdd.sign(PDD_PARAMS, "pddsecret") == expected == "8906DA195EB8823F642B4880CF273A32"
    assert pdd.sign(dict(PDD_PARAMS, sign=expected), "pddsecret") == expected


def test_pdd_websocket_url() -> None:
    digest = hashlib.md5(b"pddclient1731254400000pddsecret").hexdigest()
    expected = base64.b64encode(digest.encode()).decode()
    assert pdd.ws_signature("pddclient", 1731254400000, "pddsecret") == expected == "ODdmODkyYzk5MTI4ZmI2NGM2ZjdkMjNkMjBjOGRiMTg="
    assert pdd.ws_path("pddclient", 1731254400000, "pddsecret") == f"/message/pddclient/1731254400000/{expected}"


def test_pdd_timestamp_is_unix_seconds() -> None:
    assert pdd.timestamp(1731254400999) == "1731254400"


# -- through the registry ---------------------------------------------------------------------


def test_connector_sign_delegates() -> None:
    assert get_connector("tmall").sign(TOP_VECTOR, "helloworld") == "66987CB115214E59E6EC978214934FB8"
    assert get_connector("jd").sign(JD_PARAMS, "jdsecret") == "A6D91D479A1C9068A983FAC0070971FD"
    assert get_connector("douyin").sign(dict(DD_PARAMS, sign_method="md5"), "ddsecret") == "9d118386c882ae5f21deb339b1232125"
    assert get_connector("pdd").sign(PDD_PARAMS, "pddsecret") == "8906DA195EB8823F642B4880CF273A32"
