"""Forged signatures and stale timestamps on every signed channel.

Inbound to us (we verify):
  * Douyin push: `event-sign` = md5(app_key + raw body + app_secret) (`douyin.verify_event_sign`,
    and the receiver `DouyinAdapter._receive`: 401, code 40001, counted in `bad_signatures`).
  * Warehouse HTTP: the shared per-warehouse token (`WarehouseAdapter.authenticate` / 401).
Outbound from us (the platform verifies; here its simulator, which models the platform's rules):
  * TOP gateway (TMC consume / confirm, fullinfo, stock writes): code 25 bad signature, 31 timestamp.
  * JOS gateway: code 14 bad signature, 8 timestamp.
  * PDD gateway: 10016 bad signature, 10017 timestamp; PDD message WebSocket URL
    `/message/{client_id}/{ts_ms}/{sign}`: refused with 401 and the same codes.
  * Douyin open API: 30001 isv.sign-invalid, 31001 timestamp.

Property: a correctly signed message is accepted; any single mutation of it (a signed value
changed, a parameter added or dropped, the signature changed, the body changed, another app's
key) is refused with the signature reason; a correctly signed message whose timestamp lies
outside the platform's window (10 minutes, marketplaces.md) is refused with the timestamp reason.

Not applicable: Douyin pushes and warehouse documents carry no timestamp to be stale (the
reference gives the push none; replays are absorbed by msg_id / document-line dedupe downstream).
By the platforms' own rules some changes are not mutations: JOS skips empty values when signing,
Douyin signs only app_key, method, param_json, timestamp and v (not access_token), and the
event-sign comparison ignores hex case.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors import base, douyin, jd, pdd, tmall
from connectors.adapters.douyin import DouyinAdapter
from connectors.simulators import douyin_api, jd_api, pdd_api, tmall_api
from connectors.simulators.base_api import SimShop
from stockstream.settings import Settings, ShopCredentials
from tests.fuzz.hostile import fewer

SIGNED = fewer(20)  # 500 examples per channel by default: each is one check, the space is small
WINDOW_S = 600  # every platform here: 10 minutes either way
LOOP = asyncio.new_event_loop()


def shops(platform: str) -> list[SimShop]:
    return [SimShop(f"{platform}-shop-{i}", f"{platform}-app-{i}", f"{platform}-secret-{i}", f"{platform}-token-{i}") for i in range(2)]


def now_s() -> int:
    return int(time.time())


# in-window offsets keep clear of the edge: a run may take a second between signing and checking
in_window = st.integers(-(WINDOW_S - 30), WINDOW_S - 30)
stale = st.one_of(st.integers(WINDOW_S + 30, 10 * 365 * 86400), st.integers(-10 * 365 * 86400, -(WINDOW_S + 30)))
text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)


def changed(value: str, draw: Callable[[Any], Any]) -> str:
    """`value` with a change that is always a different, non-empty string."""
    how = draw(st.sampled_from(["append", "prepend", "replace", "truncate", "other"]))
    if how == "append":
        return value + draw(text)
    if how == "prepend":
        return draw(text) + value
    if how == "truncate" and len(value) > 1:
        return value[: draw(st.integers(1, len(value) - 1))]
    if how == "replace" and value:
        i = draw(st.integers(0, len(value) - 1))
        c = draw(st.characters(codec="utf-8", exclude_categories=("Cs",)).filter(lambda ch: ch != value[i]))
        return value[:i] + c + value[i + 1 :]
    new = draw(text)
    return new if new != value else value + "x"


def changed_hex(sign: str, draw: Callable[[Any], Any]) -> str:
    """A hex signature with one digit changed (case aside), or cut, or extended."""
    how = draw(st.sampled_from(["digit", "cut", "extend"]))
    if how == "cut":
        return sign[: draw(st.integers(1, len(sign) - 1))]  # an empty one is "missing", not forged
    if how == "extend":
        return sign + draw(st.sampled_from("0123456789abcdef"))
    i = draw(st.integers(0, len(sign) - 1))
    digit = draw(st.sampled_from([d for d in "0123456789abcdef" if d != sign[i].lower()]))
    return sign[:i] + (digit.upper() if sign[i].isupper() else digit) + sign[i + 1 :]


# --------------------------------------------------------------------------------------------
# The gateways: one description per platform


@dataclass
class Gateway:
    platform: str
    sim: Any
    error: type
    sign_code: Any
    time_code: Any
    make: Callable[[SimShop, int], dict[str, str]]  # a correctly signed request at a unix time
    resign: Callable[[dict[str, str], str], dict[str, str]]  # re-sign params with a secret
    required: tuple[str, ...]
    fixed: tuple[str, ...] = ()  # values a mutation must not touch (checked before the signature)
    skips_empty: bool = False
    extra: dict[str, Callable[[str, Callable], str]] = field(default_factory=dict)

    def call(self, params: dict[str, str]) -> Optional[Any]:
        """The error code the gateway answers, None when it accepts."""
        try:
            self.sim._handle(params)
        except self.error as exc:
            return exc.code
        return None


def _top(shop: SimShop, ts: int) -> dict[str, str]:
    params = {
        "method": "taobao.tmc.messages.consume", "app_key": shop.app_key, "timestamp": tmall.timestamp(ts * 1000),
        "format": "json", "v": "2.0", "sign_method": "md5", "quantity": "10", "group_name": "default",
    }
    return {**params, "sign": tmall.sign(params, shop.app_secret)}


def _jos(shop: SimShop, ts: int) -> dict[str, str]:
    params = {
        "method": "jingdong.stock.read.findSkuStock", "app_key": shop.app_key, "access_token": shop.access_token,
        "timestamp": jd.timestamp(ts * 1000), "v": "2.0", "sign_method": "md5",
        "360buy_param_json": json.dumps({"skuId": "100012345678"}),
    }
    return {**params, "sign": jd.sign(params, shop.app_secret)}


def _pdd(shop: SimShop, ts: int) -> dict[str, str]:
    params = {
        "type": "pdd.goods.detail.get", "client_id": shop.app_key, "access_token": shop.access_token,
        "timestamp": pdd.timestamp(ts * 1000), "data_type": "JSON", "version": "V1", "goods_id": "123456789",
    }
    return {**params, "sign": pdd.sign(params, shop.app_secret)}


def _resign(sign: Callable[[dict[str, str], str], str]) -> Callable[[dict[str, str], str], dict[str, str]]:
    return lambda params, secret: {**params, "sign": sign({k: v for k, v in params.items() if k != "sign"}, secret)}


def toward_now(offset_s: int, draw: Callable, unit: int = 1) -> int:
    """A shift of 1..300 s (in `unit`s) towards now: an in-window time stays in the window."""
    return draw(st.integers(1, 300 * unit)) * (-1 if offset_s > 0 else 1)


def _other_time(ts_param: str, platform: str, shift: int) -> str:
    """The timestamp moved by `shift` seconds, in the platform's format."""
    if platform == "tmall":
        ms = base.gmt8_ms(ts_param, "t") + shift * 1000
        return tmall.timestamp(ms)
    if platform == "jd":
        ms = base.gmt8_ms(ts_param[:-5], "t") + shift * 1000
        return jd.timestamp(ms)
    return str(int(ts_param) + shift)


TOP_SHOPS, JOS_SHOPS, PDD_SHOPS, DOUYIN_SHOPS = shops("tmall"), shops("jd"), shops("pdd"), shops("douyin")
GATEWAYS = {
    "tmall": Gateway(
        "tmall", tmall_api.TmallSim(TOP_SHOPS), tmall_api.TopError, 25, 31, _top, _resign(tmall.sign),
        required=("method", "app_key", "timestamp", "v", "sign_method", "sign"),
        extra={"sign_method": lambda v, draw: "hmac" if v == "md5" else "md5"},
    ),
    "jd": Gateway(
        "jd", jd_api.JdSim(JOS_SHOPS), jd_api.JosError, jd_api.CODE_INVALID_SIGN, jd_api.CODE_INVALID_TIMESTAMP, _jos,
        _resign(jd.sign), required=("method", "app_key", "timestamp", "v", "sign"), fixed=("sign_method",), skips_empty=True,
    ),
    "pdd": Gateway(
        "pdd", pdd_api.PddSim(PDD_SHOPS), pdd_api.PddError, pdd_api.CODE_SIGN, pdd_api.CODE_TIMESTAMP, _pdd,
        _resign(pdd.sign), required=("type", "client_id", "timestamp", "sign"),
    ),
}


def forge(gw: Gateway, params: dict[str, str], shop: SimShop, offset: int, draw: Callable) -> dict[str, str]:
    """One mutation of a correctly signed request that keeps it well-formed (known app, readable
    in-window timestamp, required parameters present), so only the signature can refuse it."""
    app_key = "client_id" if gw.platform == "pdd" else "app_key"
    how = draw(st.sampled_from(["value", "sign", "add", "drop", "app", "secret"]))
    out = dict(params)
    if how == "sign":
        out["sign"] = changed_hex(params["sign"], draw)
    elif how == "add":
        key = draw(text.filter(lambda k: k not in params))
        out[key] = draw(text)
    elif how == "drop" and [k for k in params if k not in gw.required]:
        del out[draw(st.sampled_from([k for k in params if k not in gw.required]))]
    elif how == "app":  # the other app's key on a request signed with this app's secret
        other = next(s for s in gw.sim.shops.values() if s.app_key != shop.app_key)
        out[app_key] = other.app_key
    elif how == "secret":  # signed with a wrong secret
        out = gw.resign(params, changed(shop.app_secret, draw))
    else:
        key = draw(st.sampled_from([k for k in params if k not in ("sign", app_key, *gw.fixed)]))
        if key == "timestamp":
            out[key] = _other_time(params[key], gw.platform, toward_now(offset, draw))
        elif key in gw.extra:
            out[key] = gw.extra[key](params[key], draw)
        else:
            out[key] = changed(params[key], draw)
    return out


@pytest.mark.parametrize("platform", sorted(GATEWAYS))
@SIGNED
@given(data=st.data(), offset=in_window, which=st.integers(0, 1))
def test_gateway_refuses_any_forged_request(platform: str, data: st.DataObject, offset: int, which: int) -> None:
    gw = GATEWAYS[platform]
    shop = list(gw.sim.shops.values())[which]
    params = gw.make(shop, now_s() + offset)
    assert gw.call(params) not in (gw.sign_code, gw.time_code), "the correctly signed request is accepted"
    forged = forge(gw, params, shop, offset, data.draw)
    if forged == params or (gw.skips_empty and _same_non_empty(forged, params)):
        return
    assert gw.call(forged) == gw.sign_code, forged


def _same_non_empty(a: dict[str, str], b: dict[str, str]) -> bool:
    return {k: v for k, v in a.items() if v != ""} == {k: v for k, v in b.items() if v != ""}


@pytest.mark.parametrize("platform", sorted(GATEWAYS))
@SIGNED
@given(offset=stale, which=st.integers(0, 1))
def test_gateway_refuses_stale_timestamps(platform: str, offset: int, which: int) -> None:
    gw = GATEWAYS[platform]
    shop = list(gw.sim.shops.values())[which]
    ts = now_s() + offset
    if platform in ("tmall", "jd") and not base._MIN_MS <= ts * 1000 < base._MAX_MS:
        ts = max(min(ts, base._MAX_MS // 1000 - 1), base._MIN_MS // 1000)
    assert gw.call(gw.make(shop, ts)) == gw.time_code


# --------------------------------------------------------------------------------------------
# Douyin open API (signs app_key, method, param_json, timestamp, v; body = param_json)

DOUYIN_SIM = douyin_api.DouyinSim(DOUYIN_SHOPS)


@dataclass
class FakeRequest:
    """What the handlers read from an aiohttp request."""

    query: dict[str, str] = field(default_factory=dict)
    path: str = "/"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    match_info: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    async def read(self) -> bytes:
        return self.body


def douyin_request(shop: SimShop, ts: int, sign_method: str, param_json: str) -> FakeRequest:
    method = "sku.detail"
    q = {"app_key": shop.app_key, "method": method, "access_token": shop.access_token, "timestamp": str(ts), "v": "2", "sign_method": sign_method}
    q["sign"] = douyin.sign({**q, "param_json": param_json}, shop.app_secret)
    return FakeRequest(query=q, path="/sku/detail", body=param_json.encode())


def douyin_answer(request: FakeRequest) -> Optional[tuple[int, str]]:
    try:
        DOUYIN_SIM._handle(request, request.body)
    except douyin_api.DouyinError as exc:
        return exc.code, exc.sub_code
    return None


DOUYIN_BAD_SIGN = (douyin_api.CODE_AUTH, "isv.sign-invalid")


@SIGNED
@given(data=st.data(), offset=in_window, which=st.integers(0, 1), sign_method=st.sampled_from(["md5", "hmac-sha256"]))
def test_douyin_api_refuses_any_forged_request(data: st.DataObject, offset: int, which: int, sign_method: str) -> None:
    shop = DOUYIN_SHOPS[which]
    business = data.draw(st.dictionaries(text, text | st.integers(), max_size=3))
    request = douyin_request(shop, now_s() + offset, sign_method, douyin.param_json(business))
    assert douyin_answer(request) not in (DOUYIN_BAD_SIGN,) and (douyin_answer(request) or (0,))[0] != douyin_api.CODE_TIMESTAMP
    q = dict(request.query)
    body = request.body.decode()
    how = data.draw(st.sampled_from(["body", "sign", "signed-value", "app", "sign_method", "secret"]))
    if how == "body":
        body = changed(body, data.draw)
    elif how == "sign":
        q["sign"] = changed_hex(q["sign"], data.draw)
    elif how == "signed-value":
        key = data.draw(st.sampled_from(["v", "timestamp"]))
        q[key] = changed(q[key], data.draw) if key == "v" else str(int(q[key]) + toward_now(offset, data.draw))
    elif how == "app":
        q["app_key"] = DOUYIN_SHOPS[1 - which].app_key
    elif how == "sign_method":
        q["sign_method"] = "md5" if sign_method == "hmac-sha256" else "hmac-sha256"
    else:
        q["sign"] = douyin.sign({**q, "param_json": body}, changed(shop.app_secret, data.draw))
    forged = FakeRequest(query=q, path=request.path, body=body.encode())
    assert douyin_answer(forged) == DOUYIN_BAD_SIGN, (how, q, body)


@SIGNED
@given(offset=stale, which=st.integers(0, 1))
def test_douyin_api_refuses_stale_timestamps(offset: int, which: int) -> None:
    request = douyin_request(DOUYIN_SHOPS[which], now_s() + offset, "hmac-sha256", "{}")
    assert douyin_answer(request) == (douyin_api.CODE_TIMESTAMP, "isv.timestamp-invalid")


# --------------------------------------------------------------------------------------------
# PDD message WebSocket: the signed URL


def ws_answer(client_id: str, ts_ms: str, sign: str) -> Optional[int]:
    sim = GATEWAYS["pdd"].sim
    request = FakeRequest(match_info={"client_id": client_id, "ts_ms": ts_ms, "sign": sign})
    response = LOOP.run_until_complete(sim._websocket(request))
    assert response.status == 401
    return json.loads(response.body)["error_response"]["error_code"]


@SIGNED
@given(data=st.data(), offset=in_window, which=st.integers(0, 1))
def test_pdd_websocket_refuses_any_forged_url(data: st.DataObject, offset: int, which: int) -> None:
    shop = PDD_SHOPS[which]
    ts_ms = (now_s() + offset) * 1000 + data.draw(st.integers(0, 999))
    sign = pdd.ws_signature(shop.app_key, ts_ms, shop.app_secret)
    client_id, ts = shop.app_key, str(ts_ms)
    how = data.draw(st.sampled_from(["sign", "ts", "app", "secret"]))
    if how == "sign":
        sign = changed(sign, data.draw)
    elif how == "ts":
        ts = str(ts_ms + toward_now(offset, data.draw, unit=1000))
    elif how == "app":
        client_id = PDD_SHOPS[1 - which].app_key
    else:
        sign = pdd.ws_signature(shop.app_key, ts_ms, changed(shop.app_secret, data.draw))
    assert ws_answer(client_id, ts, sign) == pdd_api.CODE_SIGN


@SIGNED
@given(offset=stale, which=st.integers(0, 1))
def test_pdd_websocket_refuses_stale_timestamps(offset: int, which: int) -> None:
    shop = PDD_SHOPS[which]
    ts_ms = (now_s() + offset) * 1000
    assert ws_answer(shop.app_key, str(ts_ms), pdd.ws_signature(shop.app_key, ts_ms, shop.app_secret)) == pdd_api.CODE_TIMESTAMP


# --------------------------------------------------------------------------------------------
# Douyin push event-sign (inbound: our receiver verifies)

def _never_stored() -> None:
    raise AssertionError("a push with a forged event-sign was stored")


PUSH_APPS = {"douyin-app-0": "douyin-secret-0", "douyin-app-1": "douyin-secret-1"}
ADAPTER = DouyinAdapter(
    [
        ShopCredentials(platform="douyin", shop_id=f"shop-{i}", app_key=k, app_secret=SecretStr(v), access_token=SecretStr("t"))
        for i, (k, v) in enumerate(PUSH_APPS.items())
    ],
    sink=lambda *_args: _never_stored(),
)
push_bodies = st.one_of(
    st.binary(min_size=1, max_size=300),
    st.builds(lambda tag, mid: douyin.push_body([{"tag": tag, "msg_id": mid, "data": '{"p_id":1,"shop_id":2,"update_time":1731254400}'}]), st.sampled_from(list(douyin.TAGS)), text),
)


def forged_push(data: st.DataObject, app: str, body: bytes) -> tuple[str, bytes, str]:
    secret = PUSH_APPS[app]
    sign = douyin.event_sign(app, body, secret)
    how = data.draw(st.sampled_from(["body", "sign", "app", "secret"]))
    if how == "body":
        pos = data.draw(st.integers(0, len(body)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        if op == "insert" or not body[pos:]:
            body = body[:pos] + data.draw(st.binary(min_size=1, max_size=3)) + body[pos:]
        elif op == "delete":
            body = body[:pos] + body[pos + 1 :]
        else:
            byte = data.draw(st.integers(0, 255).filter(lambda b: b != body[pos]))
            body = body[:pos] + bytes([byte]) + body[pos + 1 :]
    elif how == "sign":
        sign = changed_hex(sign, data.draw)
    elif how == "app":
        app = next(a for a in PUSH_APPS if a != app)
    else:
        sign = douyin.event_sign(app, body, changed(secret, data.draw))
    return app, body, sign


@SIGNED
@given(data=st.data(), app=st.sampled_from(sorted(PUSH_APPS)), body=push_bodies)
def test_douyin_push_refuses_any_forged_event_sign(data: st.DataObject, app: str, body: bytes) -> None:
    assert douyin.verify_event_sign(app, body, PUSH_APPS[app], douyin.event_sign(app, body, PUSH_APPS[app]))
    forged_app, forged_body, sign = forged_push(data, app, body)
    assert not douyin.verify_event_sign(forged_app, forged_body, PUSH_APPS[forged_app], sign)


@fewer(50)
@given(data=st.data(), app=st.sampled_from(sorted(PUSH_APPS)), body=push_bodies)
def test_douyin_receiver_answers_401_and_counts_forged_pushes(data: st.DataObject, app: str, body: bytes) -> None:
    forged_app, forged_body, sign = forged_push(data, app, body)
    before = ADAPTER.bad_signatures
    request = FakeRequest(body=forged_body, headers={"app-id": forged_app, "event-sign": sign})
    response = LOOP.run_until_complete(ADAPTER._receive(request))
    assert response.status == 401 and json.loads(response.body)["code"] == 40001
    assert ADAPTER.bad_signatures == before + 1


# --------------------------------------------------------------------------------------------
# Warehouse HTTP token (inbound)

WAREHOUSE_TOKENS = {"HZ-FTZ-01": "tok-hz-0123456789abcdef", "SH-3PL": "tok-sh-fedcba9876543210"}


class _NoPublisher:
    settings = Settings()

    def publish(self, *args: Any, **kwargs: Any) -> int:  # pragma: no cover - a forged document must not get here
        raise AssertionError("a document with a forged token was published")


def _warehouse_adapter():
    from connectors.adapters.warehouse import WarehouseAdapter

    return WarehouseAdapter(_NoPublisher(), tokens=WAREHOUSE_TOKENS, quarantine=_NoPublisher(), settings=Settings())  # type: ignore[arg-type]


WAREHOUSE = _warehouse_adapter()


@SIGNED
@given(data=st.data(), warehouse_id=st.sampled_from(sorted(WAREHOUSE_TOKENS)))
def test_warehouse_refuses_any_forged_token(data: st.DataObject, warehouse_id: str) -> None:
    token = WAREHOUSE_TOKENS[warehouse_id]
    assert WAREHOUSE.authenticate(token) == warehouse_id
    forged = data.draw(st.one_of(st.just(token.upper()), st.just(""), st.builds(lambda: changed(token, data.draw))))
    assert WAREHOUSE.authenticate(forged) is None
    request = FakeRequest(body=b'{"document_id":"D"}', headers={"X-Warehouse-Token": forged})
    response = LOOP.run_until_complete(WAREHOUSE._receive(request))
    assert response.status == 401
