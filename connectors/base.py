"""What every marketplace connector shares: the interface, raw-record headers, PII stripping and
the defensive field readers the parsers are built from.

A connector has a pure half (sign requests, parse payloads; this package) and an I/O half (poll,
push, write stock; declared in `Connector`, implemented later). Parsing is total: any bytes give
either a tuple of canonical `OrderUpdate`s or a `Rejected` with a machine-readable reason code,
never an exception, because a single poisoned payload must not stop a partition.

JSON is read with the standard library on purpose: orjson turns integers beyond 64 bits into
floats silently, and Taobao / Douyin order ids above 2**53 must stay exact.
"""

from __future__ import annotations

from types import ModuleType

import functools
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, AsyncIterator, Callable, Mapping, Optional, Protocol, Sequence, Union

from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

# --------------------------------------------------------------------------------------------
# Outcomes


@dataclass(frozen=True)
class Rejected:
    """A payload that could not be turned into canonical updates; goes to the quarantine topic."""

    reason_code: str
    reason: str


ParseOutcome = Union[tuple[OrderUpdate, ...], Rejected]

# Reason codes: a small closed set so quarantine can be counted and alerted on per code.
BAD_ENCODING = "bad_encoding"  # not UTF-8
BAD_JSON = "bad_json"  # not JSON, NaN/Infinity, nested too deeply
TOO_LARGE = "too_large"
WRONG_SHAPE = "wrong_shape"  # JSON, but not the structure this kind of payload has
UNKNOWN_KIND = "unknown_kind"  # the `kind` header names no payload kind of this platform
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
BAD_ID = "bad_id"
BAD_QUANTITY = "bad_quantity"
BAD_TIME = "bad_time"
UNKNOWN_STATUS = "unknown_status"  # status / tag / topic / message type we have no mapping for
MISSING_SHOP = "missing_shop"  # neither the `shop` header nor the payload names the shop
DUPLICATE_LINE = "duplicate_line"
PLATFORM_ERROR = "platform_error"  # an error response stored instead of data
PARSER_ERROR = "parser_error"  # a bug in a parser; the payload is kept for replay after a fix

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024


class RejectError(Exception):
    """Raised inside parsers to bail out; `guard` turns it into `Rejected`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


# --------------------------------------------------------------------------------------------
# Raw records on `raw.<platform>` topics


class RawHeader:
    """Kafka header names on raw records. Values are UTF-8 strings."""

    PLATFORM = "platform"  # tmall | jd | douyin | pdd | warehouse
    SHOP = "shop"  # ShopCredentials.shop_id the record was fetched for / addressed to
    RECEIVED_AT = "received-at"  # epoch ms (decimal) when our adapter received the payload
    MESSAGE_ID = "message-id"  # the platform's delivery id when it has one (dedupe across redeliveries)
    KIND = "kind"  # which payload shape the value is; each platform module lists its kinds


@dataclass(frozen=True)
class RawRecord:
    """One record for a raw topic: key = order id (or warehouse document id), value = payload
    with personal data already stripped, headers = `RawHeader` names."""

    key: str
    value: bytes
    headers: Mapping[str, str]

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [(k, v.encode()) for k, v in self.headers.items()]


def raw_record(
    *,
    platform: str,
    shop: str,
    kind: str,
    key: str,
    payload: bytes,
    received_at_ms: int,
    message_id: Optional[str] = None,
) -> RawRecord:
    """Build a raw record; the payload is stripped of personal data here so no adapter can forget.
    Raises ValueError if the payload is not JSON (it cannot be stripped, so it must not be stored)."""
    headers = {
        RawHeader.PLATFORM: platform,
        RawHeader.SHOP: shop,
        RawHeader.KIND: kind,
        RawHeader.RECEIVED_AT: str(received_at_ms),
    }
    if message_id:
        headers[RawHeader.MESSAGE_ID] = message_id
    return RawRecord(key=key, value=redact_payload(payload), headers=headers)


def header(headers: Any, name: str) -> Optional[str]:
    """A header value as str, tolerating bytes values and odd mappings; None when absent/unusable."""
    try:
        value = headers.get(name) if headers is not None else None
    except Exception:
        return None
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or not value:
        return None
    return value


# --------------------------------------------------------------------------------------------
# Personal data (PIPL): buyer identity, contact and address never reach Kafka.
#
# Matching is on the key, normalised (lower case, no `_` / `-`) so snake_case (TOP, Douyin, PDD)
# and camelCase (JD) spellings are one rule. Whole sub-objects go when their key matches
# (JD consigneeInfo, Douyin post_addr / user_id_info). Free-text buyer remarks go too: buyers
# write phone numbers in them.

_PII_EXACT = frozenset(
    {
        # Taobao / Tmall trade
        "buyernick", "buyeropenuid", "buyeremail", "buyeralipayno", "buyerid", "buyerip", "buyerarea",
        "buyermessage", "buyermemo", "buyername", "oaid", "invoicename", "alipayid",
        # JD
        "pin", "xidbuyer", "orderremark", "invoiceinfo", "invoiceeasyinfo", "invoicetitle",
        "fullname", "realname",
        # Douyin
        "buyerwords", "useridinfo", "encryptpostreceiver",
        # PDD (order info has flat address parts)
        "address", "province", "city", "county", "district", "town", "street", "country", "zip",
        "zipcode", "postcode", "idcardnum", "idcardname", "idcardno", "idnumber", "certno", "payername",
        "payerphone", "payeridno",
    }
)
_PII_SUBSTRINGS = (
    "receiver",  # receiver_* (TOP, PDD), post_receiver / receiver_msg (Douyin)
    "consignee",  # JD consigneeInfo, invoiceConsigneePhone
    "phone",
    "mobile",
    "email",
    "address",
    "idcard",
    "openid",  # JD open_id_buyer, Douyin doudian_open_id
    "openuid",
    "nick",  # buyer_nick; also seller nicks (individual sellers are people too)
)
_PII_SUFFIXES = ("tel", "addr")  # Douyin post_tel / post_addr and their mask_ / encrypt_ twins


def is_personal_key(key: str) -> bool:
    k = key.lower().replace("_", "").replace("-", "")
    return k in _PII_EXACT or any(s in k for s in _PII_SUBSTRINGS) or k.endswith(_PII_SUFFIXES)


def strip_personal_data(obj: Any) -> Any:
    """A copy of a decoded JSON value without personal-data keys, at any depth. Strings that hold
    JSON objects/arrays (TMC `content`, Douyin `data`, PDD `content`) are stripped inside and
    re-serialised; other strings are kept byte for byte."""
    return _strip(obj)[0]


def _strip(obj: Any) -> tuple[Any, bool]:
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        changed = False
        for k, v in obj.items():
            if isinstance(k, str) and is_personal_key(k):
                changed = True
                continue
            nv, c = _strip(v)
            out[k] = nv
            changed = changed or c
        return out, changed
    if isinstance(obj, list):
        items = [_strip(v) for v in obj]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(obj, str) and obj.strip()[:1] in ("{", "[") and obj.strip()[-1:] in ("}", "]"):
        try:
            inner = loads_json(obj)
        except (ValueError, RecursionError):
            return obj, False
        stripped, changed = _strip(inner)
        if changed:
            return dumps_json(stripped), True
    return obj, False


def redact_payload(payload: bytes) -> bytes:
    """`strip_personal_data` on a JSON payload; the input bytes unchanged when nothing was removed.
    Raises ValueError for non-JSON input: it cannot be inspected, so it must not be stored."""
    try:
        doc = loads_json(payload.decode("utf-8"))
        stripped, changed = _strip(doc)
    except (UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"payload cannot be inspected for personal data: {type(exc).__name__}") from None
    return dumps_json(stripped).encode("utf-8") if changed else bytes(payload)


# --------------------------------------------------------------------------------------------
# JSON


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# `\ud800`-style escapes: json decodes a lone one into a str that cannot be encoded as UTF-8, so
# a Kafka key, movement id or Avro string built from it would raise far from the parser.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


# One decoder for every payload: json.loads with any option builds a new JSONDecoder per call
# (about 1% of a worker's time in the processors' profile).
_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def loads_json(text: Union[str, bytes]) -> Any:
    if isinstance(text, (bytes, bytearray)):
        doc = json.loads(text, parse_constant=_no_constants)  # detects UTF-16/32 as json.loads does
        text = bytes(text).decode("utf-8", "replace")
    else:
        if text.startswith("\ufeff"):  # what json.loads says of it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        doc = _DECODER.decode(text)
    if _SURROGATE_ESCAPE.search(text):  # rare: pairs (escaped emoji) decode fine, check the result
        try:
            json.dumps(doc, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a lone UTF-16 surrogate escape is not Unicode text") from None
    return doc


def dumps_json(obj: Any) -> str:
    """Compact JSON, non-ASCII kept as is (what the platforms send)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def dumps_bytes(obj: Any) -> bytes:
    return dumps_json(obj).encode("utf-8")


def load_payload(payload: bytes) -> Any:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RejectError(TOO_LARGE, f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectError(BAD_ENCODING, f"not UTF-8 at byte {exc.start}") from None
    try:
        return loads_json(text)
    except RecursionError:
        raise RejectError(BAD_JSON, "JSON nested too deeply") from None
    except ValueError as exc:
        raise RejectError(BAD_JSON, _short(str(exc))) from None


def nested_json(value: Any, where: str) -> dict[str, Any]:
    """An object the platform sends as a JSON string (TMC content, Douyin data); an already
    decoded object is accepted too, since some SDKs hand it over decoded."""
    if isinstance(value, str):
        try:
            value = loads_json(value)
        except RecursionError:
            raise RejectError(BAD_JSON, f"{where}: nested too deeply") from None
        except ValueError as exc:
            raise RejectError(BAD_JSON, f"{where}: {_short(str(exc))}") from None
    return obj(value, where)


# --------------------------------------------------------------------------------------------
# Field readers: each raises RejectError with a specific reason.


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(value: Any) -> str:
    return _short(repr(value), 60)


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RejectError(WRONG_SHAPE, f"{where}: expected an object, got {type(value).__name__}")
    return value


def array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise RejectError(WRONG_SHAPE, f"{where}: expected an array, got {type(value).__name__}")
    return value


def required(d: Mapping[str, Any], key: str, where: str) -> Any:
    value = d.get(key)
    if value is None or value == "":
        raise RejectError(MISSING_FIELD, f"{where}.{key} missing")
    return value


def first_present(d: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = d.get(key)
        if value is not None and value != "":
            return value
    return None


def required_any(d: Mapping[str, Any], keys: Sequence[str], where: str) -> Any:
    value = first_present(d, *keys)
    if value is None:
        raise RejectError(MISSING_FIELD, f"{where}.{keys[0]} missing")
    return value


_ID_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,128}")
CONTROL_CHAR = re.compile(r"[\x00-\x1f]")


def id_str(value: Any, where: str) -> str:
    """An identifier as an exact string. JSON numbers are accepted when integral (Python's json
    keeps them exact); floats are refused because their digits are already lost."""
    if isinstance(value, bool):
        raise RejectError(WRONG_TYPE, f"{where}: boolean is not an id")
    if isinstance(value, int):
        if value < 0:
            raise RejectError(BAD_ID, f"{where}: negative id {value}")
        return str(value)
    if isinstance(value, str):
        if not _ID_RE.fullmatch(value):
            raise RejectError(BAD_ID, f"{where}: malformed id {_show(value)}")
        return value
    raise RejectError(WRONG_TYPE, f"{where}: id must be a string or integer, got {type(value).__name__}")


def opt_id_str(value: Any, where: str) -> Optional[str]:
    """An optional id; platforms send "" or 0 for "not set" (TOP sku_id of SKU-less items)."""
    if value is None or value == "" or (isinstance(value, int) and not isinstance(value, bool) and value == 0):
        return None
    return id_str(value, where)


def code_str(value: Any, where: str) -> Optional[str]:
    """A seller-defined merchant code: free text, may be blank (not set by the seller)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RejectError(WRONG_TYPE, f"{where}: boolean is not a merchant code")
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, str):
        raise RejectError(WRONG_TYPE, f"{where}: merchant code must be a string, got {type(value).__name__}")
    value = value.strip()
    if not value:
        return None
    if len(value) > 128 or CONTROL_CHAR.search(value):
        raise RejectError(BAD_ID, f"{where}: malformed merchant code {_show(value)}")
    return value


def integer(value: Any, where: str) -> int:
    """An integer sent as a JSON number or a decimal string (JD sends numbers as strings)."""
    if isinstance(value, bool):
        raise RejectError(WRONG_TYPE, f"{where}: boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
        return int(value)
    raise RejectError(WRONG_TYPE, f"{where}: not an integer: {_show(value)}")


def quantity(value: Any, where: str) -> int:
    """A line quantity: a whole number of units, at least 1."""
    try:
        q = integer(value, where)
    except RejectError as exc:
        raise RejectError(BAD_QUANTITY, exc.reason) from None
    if q < 1:
        raise RejectError(BAD_QUANTITY, f"{where}: quantity {q} is not positive")
    if q > 1_000_000:
        raise RejectError(BAD_QUANTITY, f"{where}: quantity {q} is implausible for one order line")
    return q


def opt_quantity(value: Any, where: str) -> Optional[int]:
    return None if value is None or value == "" else quantity(value, where)


# --------------------------------------------------------------------------------------------
# Time. Everything canonical is epoch ms UTC; Chinese platforms speak Beijing time (GMT+8).

GMT8 = timezone(timedelta(hours=8))
_MIN_MS = 946_684_800_000  # 2000-01-01: nothing in these feeds is older
_MAX_MS = 4_102_444_800_000  # 2100-01-01
_LOCAL_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?")


def _check_range(ms: int, where: str) -> int:
    if not _MIN_MS <= ms < _MAX_MS:
        raise RejectError(BAD_TIME, f"{where}: {ms} ms is outside 2000..2100")
    return ms


def gmt8_ms(value: Any, where: str) -> int:
    """`yyyy-MM-dd HH:mm:ss[.SSS]` in Beijing time -> epoch ms."""
    if not isinstance(value, str):
        raise RejectError(WRONG_TYPE, f"{where}: time must be a string, got {type(value).__name__}")
    m = _LOCAL_RE.fullmatch(value)
    if not m:
        raise RejectError(BAD_TIME, f"{where}: not yyyy-MM-dd HH:mm:ss: {_show(value)}")
    y, mo, d, h, mi, s, frac = m.groups()
    try:
        seconds = _gmt8_seconds(y, mo, d, h, mi, s)
    except ValueError:
        raise RejectError(BAD_TIME, f"{where}: no such time {_show(value)}") from None
    ms = seconds * 1000 + (int(frac.ljust(3, "0")) if frac else 0)
    return _check_range(ms, where)


# Events of one busy second share their timestamp: at peak most conversions are repeats.
@functools.lru_cache(maxsize=4096)
def _gmt8_seconds(y: str, mo: str, d: str, h: str, mi: str, s: str) -> int:
    return int(datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=GMT8).timestamp())


def unix_s_ms(value: Any, where: str) -> int:
    try:
        s = integer(value, where)
    except RejectError as exc:
        raise RejectError(BAD_TIME, exc.reason) from None
    return _check_range(s * 1000, where)


def epoch_ms(value: Any, where: str) -> int:
    try:
        ms = integer(value, where)
    except RejectError as exc:
        raise RejectError(BAD_TIME, exc.reason) from None
    return _check_range(ms, where)


def format_gmt8(ms: int, millis: bool = False) -> str:
    dt = datetime.fromtimestamp(ms / 1000, GMT8)
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    return f"{text}.{ms % 1000:03d}" if millis else text


# --------------------------------------------------------------------------------------------
# Building canonical updates


def status_line(line_id: str, status: LineStatus, shipped: bool) -> LineUpdate:
    """A line known only by id and status (a notification without line details). SKU and quantity
    are None: the core knows them from an earlier message or holds the status until a detail
    (snapshot) makes the line known. Notifications that name the order but not its lines carry
    an order-level status instead (`order_status_update`)."""
    return LineUpdate(line_id, platform_sku_id=None, merchant_code=None, quantity=None, status=status, shipped=shipped)


def order_status_update(
    platform: str,
    shop_id: str,
    order_id: str,
    modified_ms: int,
    status: LineStatus,
    shipped: bool,
    message_id: Optional[str],
) -> OrderUpdate:
    """A status for the whole order, lines unnamed (PDD frames, oid-less TMC messages, Douyin
    pushes without s_ids): the core applies it to every line of the order that is not closed."""
    return OrderUpdate(platform, shop_id, order_id, modified_ms, (), message_id=message_id, status=status, shipped=shipped)


def merge_sku_lines(lines: Sequence[LineUpdate], where: str) -> tuple[LineUpdate, ...]:
    """Platforms that key lines by SKU can list one SKU twice (a gift of the same SKU); stock
    cares about the total, so quantities are summed. Differing statuses for one key are refused."""
    merged: dict[str, LineUpdate] = {}
    for line in lines:
        prev = merged.get(line.line_id)
        if prev is None:
            merged[line.line_id] = line
            continue
        if prev.status != line.status or prev.shipped != line.shipped:
            raise RejectError(DUPLICATE_LINE, f"{where}: line {line.line_id} listed twice with different states")
        merged[line.line_id] = LineUpdate(
            line_id=prev.line_id,
            platform_sku_id=prev.platform_sku_id,
            merchant_code=prev.merchant_code or line.merchant_code,
            quantity=prev.quantity + line.quantity,
            status=prev.status,
            shipped=prev.shipped,
            listing_id=prev.listing_id or line.listing_id,
        )
    return tuple(merged.values())


def unique_lines(lines: Sequence[LineUpdate], where: str) -> tuple[LineUpdate, ...]:
    seen: set[str] = set()
    for line in lines:
        if line.line_id in seen:
            raise RejectError(DUPLICATE_LINE, f"{where}: line {line.line_id} listed twice")
        seen.add(line.line_id)
    return tuple(lines)


def shop_of(headers: Any, payload_shop: Any, where: str) -> str:
    """The `shop` header wins: the adapter set it from the credentials it used. The payload's own
    shop/seller id is the fallback (Douyin pushes for every shop arrive at one callback)."""
    shop = header(headers, RawHeader.SHOP)
    if shop:
        return shop
    if payload_shop is None or payload_shop == "":
        raise RejectError(MISSING_SHOP, f"no `{RawHeader.SHOP}` header and no shop id in {where}")
    return id_str(payload_shop, f"{where} shop id")


# --------------------------------------------------------------------------------------------
# The total-parse wrapper


EMPTY_HEADERS: Mapping[str, str] = MappingProxyType({})


def guard(fn: Callable[..., Any], *args: Any) -> Any:
    """Call `fn` so that nothing escapes: RejectError and anything unexpected become `Rejected`.
    The one place that catches broadly."""
    try:
        return fn(*args)
    except RejectError as exc:
        return Rejected(exc.code, exc.reason)
    except RecursionError:
        return Rejected(BAD_JSON, "nested too deeply")
    except Exception as exc:  # a parser bug must quarantine the payload, not crash the stream
        return Rejected(PARSER_ERROR, _short(f"{type(exc).__name__}: {exc}"))


def payload_bytes(payload: Any) -> bytes:
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise RejectError(WRONG_TYPE, f"payload must be bytes, got {type(payload).__name__}")
    return bytes(payload)


def guarded(
    parse_doc: Callable[[Any, Any], tuple[OrderUpdate, ...]],
    payload: Any,
    headers: Any,
) -> ParseOutcome:
    """Decode a JSON payload and run a platform parser over it, totally."""
    return guard(lambda: parse_doc(load_payload(payload_bytes(payload)), headers))


def select_kind(headers: Any, doc: Any, kinds: Sequence[str], detect: Callable[[Any], Optional[str]]) -> str:
    """The payload kind from the `kind` header, else recognised from the payload's shape."""
    kind = header(headers, RawHeader.KIND)
    if kind is not None:
        if kind not in kinds:
            raise RejectError(UNKNOWN_KIND, f"kind {_show(kind)} is not one of {sorted(kinds)}")
        return kind
    found = detect(doc)
    if found is None:
        raise RejectError(WRONG_SHAPE, f"no `{RawHeader.KIND}` header and the payload matches none of {sorted(kinds)}")
    return found


# --------------------------------------------------------------------------------------------
# The interface


class PayloadCodec(Protocol):
    """The pure half of a marketplace connector (implemented by every platform module now)."""

    platform: str

    def sign(self, params: Mapping[str, str], secret: str) -> str:
        """The request signature exactly as the platform computes it; the method comes from
        `params["sign_method"]` where the platform has a choice."""
        ...

    def parse(self, payload: bytes, headers: Mapping[str, str] = EMPTY_HEADERS) -> ParseOutcome:
        """Raw-record value + `RawHeader` headers -> canonical updates or `Rejected`. Never raises.
        An empty tuple means the payload is valid but carries no stock meaning."""
        ...


@dataclass(frozen=True)
class ModuleCodec:
    """A platform module (`PLATFORM`, `sign`, `parse` at module level) as a `PayloadCodec`."""

    module: ModuleType

    @property
    def platform(self) -> str:
        return self.module.PLATFORM

    def sign(self, params: Mapping[str, str], secret: str) -> str:
        return self.module.sign(params, secret)

    def parse(self, payload: bytes, headers: Mapping[str, str] = EMPTY_HEADERS) -> ParseOutcome:
        return self.module.parse(payload, headers)


@dataclass(frozen=True)
class StockWrite:
    """One absolute stock level to publish on a channel."""

    shop_id: str
    platform_sku_id: str
    quantity: int
    listing_id: Optional[str] = None  # num_iid / wareId / product_id / goods_id where the API needs it


@dataclass(frozen=True)
class StockWriteResult:
    write: StockWrite
    ok: bool
    retry_after_s: Optional[float] = None  # throttled (TOP 7, PDD 52101/70031, Douyin 50002)
    error_code: Optional[str] = None
    error: Optional[str] = None


class Connector(PayloadCodec, Protocol):
    """A full connector. The I/O methods are the next step's work and not implemented yet."""

    def poll(self, shop: Any, since_ms: int, until_ms: int) -> AsyncIterator[RawRecord]:
        """Pull order data for a time window (JD order search, TMC consume+confirm, detail fetches
        on notifications). `shop` is a `stockstream.settings.ShopCredentials`."""
        ...

    def push(self, shop: Any) -> AsyncIterator[RawRecord]:
        """Records the platform pushes (Douyin HTTP callback after event-sign check, PDD
        WebSocket frames, acked only after the record is in Kafka)."""
        ...

    async def write_stock(self, shop: Any, writes: Sequence[StockWrite]) -> Sequence[StockWriteResult]:
        """Overwrite channel stock for SKUs, batching where the API allows; throttling is
        reported per write, not raised."""
        ...
