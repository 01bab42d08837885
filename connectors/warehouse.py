"""The warehouse feed (WMS, bonded / FTZ warehouse, 3PL) -> `WarehouseEvent`s.

Two forms arrive on `raw.warehouse` (`kind` header `csv` or `json`; recognised by the first
character when absent). Warehouses speak master SKUs. A payload is all-or-nothing: half a
document applied is worse than the whole document in quarantine. File-drop adapters that want
per-row quarantine use `iter_csv`.

CSV: UTF-8 (a BOM is allowed), comma-separated, a header row, one event per row; column order is
free and unknown columns are ignored.

  event_type            RECEIPT | STOCK_COUNT | TRANSFER_OUT | TRANSFER_IN | CUSTOMS_HOLD |
                        CUSTOMS_RELEASE | RETURN_RECEIVED | RETURN_RESTOCKED | RETURN_SCRAPPED |
                        ADJUSTMENT | RETURN_INSPECTED (with `result`)
  document_id           the warehouse's document id (GRN, count sheet, transfer order, ...)
  line_no               integer >= 1; with document_id it identifies the event (dedupe key)
  location              warehouse / location code
  sku                   master SKU
  quantity              integer. STOCK_COUNT: absolute count >= 0; ADJUSTMENT: signed, non-zero;
                        all others: > 0
  event_time            ISO 8601 with offset (2024-11-11T08:00:00+08:00, or Z) or epoch ms.
                        Times without offset are refused: a Shanghai WMS and a Frankfurt 3PL
                        would disagree about them.
  counterpart_location  required for TRANSFER_OUT / TRANSFER_IN (the other end), else optional
  reason                optional free text (customs hold reason, adjustment reason, ...)
  result                RETURN_INSPECTED only: restocked | scrapped

JSON: one document with the same names, lines under `lines`:

  {"document_id": "RTN-20241111-001", "type": "RETURN_INSPECTED", "location": "HZ-FTZ-01",
   "event_time": "2024-11-11T10:00:00+08:00", "counterpart_location": null, "reason": null,
   "lines": [{"line_no": 1, "sku": "SKU-1", "quantity": 2, "result": "restocked",
              "reason": "sealed"}]}

A line's `line_no` defaults to its 1-based position; a line's `reason` overrides the document's.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping, Optional, Union

from stockstream.core.model import WarehouseEvent, WarehouseEventType

from connectors import base
from connectors.base import (
    BAD_ENCODING,
    BAD_QUANTITY,
    BAD_TIME,
    DUPLICATE_LINE,
    MISSING_FIELD,
    UNKNOWN_KIND,
    UNKNOWN_STATUS,
    WRONG_SHAPE,
    WRONG_TYPE,
    Rejected,
    RejectError,
)

PLATFORM = "warehouse"
KIND_CSV = "csv"
KIND_JSON = "json"
KINDS = (KIND_CSV, KIND_JSON)
CSV_COLUMNS = (
    "event_type", "document_id", "line_no", "location", "sku", "quantity", "event_time",
    "counterpart_location", "reason", "result",
)
RETURN_INSPECTED = "RETURN_INSPECTED"
INSPECTION_RESULTS = {"restocked": WarehouseEventType.RETURN_RESTOCKED, "scrapped": WarehouseEventType.RETURN_SCRAPPED}
_TRANSFERS = (WarehouseEventType.TRANSFER_OUT, WarehouseEventType.TRANSFER_IN)

WarehouseOutcome = Union[tuple[WarehouseEvent, ...], Rejected]


def parse(payload: bytes, headers: Mapping[str, str] = base.EMPTY_HEADERS) -> WarehouseOutcome:
    """Never raises."""
    return base.guard(_parse, payload, headers)


def _parse(payload: Any, headers: Any) -> tuple[WarehouseEvent, ...]:
    data = base.payload_bytes(payload)
    kind = base.header(headers, base.RawHeader.KIND)
    if kind is None:
        kind = KIND_JSON if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else KIND_CSV
    if kind == KIND_JSON:
        return _parse_document(base.load_payload(data))
    if kind == KIND_CSV:
        events = []
        for item in _csv_rows(data):
            if isinstance(item, RejectError):
                raise item
            events.append(item)
        return _unique(events)
    raise RejectError(UNKNOWN_KIND, f"kind {kind[:40]!r} is not one of {list(KINDS)}")


def iter_csv(data: bytes) -> Iterator[Union[WarehouseEvent, Rejected]]:
    """Row by row, each an event or its own `Rejected` (a broken file yields one Rejected)."""
    try:
        for item in _csv_rows(base.payload_bytes(data)):
            yield Rejected(item.code, item.reason) if isinstance(item, RejectError) else item
    except RejectError as exc:
        yield Rejected(exc.code, exc.reason)
    except Exception as exc:
        yield Rejected(base.PARSER_ERROR, f"{type(exc).__name__}: {str(exc)[:100]}")


def _csv_rows(data: bytes) -> Iterator[Union[WarehouseEvent, RejectError]]:
    if len(data) > base.MAX_PAYLOAD_BYTES:
        raise RejectError(base.TOO_LARGE, f"{len(data)} bytes exceeds {base.MAX_PAYLOAD_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RejectError(BAD_ENCODING, f"not UTF-8 at byte {exc.start}") from None
    if "\x00" in text:
        raise RejectError(BAD_ENCODING, "NUL character in CSV")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        fields = reader.fieldnames
        if not fields:
            raise RejectError(WRONG_SHAPE, "empty CSV: no header row")
        missing = [c for c in ("event_type", "document_id", "line_no", "location", "sku", "quantity", "event_time") if c not in fields]
        if missing:
            raise RejectError(WRONG_SHAPE, f"CSV header lacks {missing}")
        for row in reader:
            where = f"row {reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                yield RejectError(WRONG_SHAPE, f"{where}: wrong number of columns")
                continue
            try:
                yield _event(row, row, row.get("line_no"), where)
            except RejectError as exc:
                yield exc
    except csv.Error as exc:
        raise RejectError(WRONG_SHAPE, f"CSV: {str(exc)[:100]}") from None


def _parse_document(doc: Any) -> tuple[WarehouseEvent, ...]:
    d = base.obj(doc, "document")
    lines = base.array(base.required(d, "lines", "document"), "document.lines")
    if not lines:
        raise RejectError(WRONG_SHAPE, "document.lines is empty")
    header = {
        "event_type": d.get("type", d.get("event_type")),
        "document_id": d.get("document_id"),
        "location": d.get("location"),
        "event_time": d.get("event_time"),
        "counterpart_location": d.get("counterpart_location"),
        "reason": d.get("reason"),
    }
    events = []
    for i, raw in enumerate(lines):
        line = base.obj(raw, f"document.lines[{i}]")
        events.append(_event(header, line, line.get("line_no", i + 1), f"document.lines[{i}]"))
    return _unique(events)


def _unique(events: list[WarehouseEvent]) -> tuple[WarehouseEvent, ...]:
    seen: set[tuple[str, int]] = set()
    for e in events:
        key = (e.document_id, e.line_no)
        if key in seen:
            raise RejectError(DUPLICATE_LINE, f"document {e.document_id} line {e.line_no} appears twice")
        seen.add(key)
    return tuple(events)


def _text(value: Any, where: str, required: bool = True) -> Optional[str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RejectError(MISSING_FIELD, f"{where} missing")
        return None
    if not isinstance(value, str):
        raise RejectError(WRONG_TYPE, f"{where} must be a string, got {type(value).__name__}")
    value = value.strip()
    if len(value) > 256 or base.CONTROL_CHAR.search(value):
        raise RejectError(base.BAD_ID, f"{where} malformed")
    return value


def _req_text(value: Any, where: str) -> str:
    text = _text(value, where)
    if text is None:  # _text raised already; keeps the type checker informed
        raise RejectError(MISSING_FIELD, f"{where} missing")
    return text


def _event(head: Mapping[str, Any], line: Mapping[str, Any], line_no: Any, where: str) -> WarehouseEvent:
    raw_type = _req_text(head.get("event_type"), f"{where}: event_type")
    if raw_type == RETURN_INSPECTED:
        result = _req_text(line.get("result"), f"{where}: result")
        event_type = INSPECTION_RESULTS.get(result.lower())
        if event_type is None:
            raise RejectError(UNKNOWN_STATUS, f"{where}: inspection result {result[:30]!r} is not restocked/scrapped")
    else:
        try:
            event_type = WarehouseEventType(raw_type)
        except ValueError:
            raise RejectError(UNKNOWN_STATUS, f"{where}: unknown event_type {raw_type[:40]!r}") from None

    location = _req_text(head.get("location"), f"{where}: location")
    counterpart = _text(head.get("counterpart_location"), f"{where}: counterpart_location", required=False)
    if event_type in _TRANSFERS:
        if counterpart is None:
            raise RejectError(MISSING_FIELD, f"{where}: {event_type.value} needs counterpart_location")
        if counterpart == location:
            raise RejectError(WRONG_SHAPE, f"{where}: transfer from {location} to itself")

    qty = _quantity(event_type, line.get("quantity"), f"{where}: quantity")
    if isinstance(line_no, str):
        line_no = line_no.strip()
    number = base.integer(line_no, f"{where}: line_no") if line_no not in (None, "") else None
    if number is None or number < 1:
        raise RejectError(MISSING_FIELD if number is None else WRONG_SHAPE, f"{where}: line_no must be an integer >= 1")
    reason = _text(line.get("reason"), f"{where}: reason", required=False) or _text(
        head.get("reason"), f"{where}: reason", required=False
    )
    return WarehouseEvent(
        event_type=event_type,
        document_id=_req_text(head.get("document_id"), f"{where}: document_id"),
        line_no=number,
        location=location,
        sku=_req_text(line.get("sku"), f"{where}: sku"),
        quantity=qty,
        event_time_ms=_time_ms(head.get("event_time"), f"{where}: event_time"),
        counterpart_location=counterpart,
        reason=reason,
    )


def _quantity(event_type: WarehouseEventType, value: Any, where: str) -> int:
    if value is None or value == "":
        raise RejectError(MISSING_FIELD, f"{where} missing")
    try:
        q = base.integer(value.strip() if isinstance(value, str) else value, where)
    except RejectError as exc:
        raise RejectError(BAD_QUANTITY, exc.reason) from None
    if event_type == WarehouseEventType.STOCK_COUNT:
        ok = q >= 0
    elif event_type == WarehouseEventType.ADJUSTMENT:
        ok = q != 0
    else:
        ok = q > 0
    if not ok or abs(q) > 10**12:
        raise RejectError(BAD_QUANTITY, f"{where}: {q} is not valid for {event_type.value}")
    return q


_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})")


def _time_ms(value: Any, where: str) -> int:
    if value is None or value == "":
        raise RejectError(MISSING_FIELD, f"{where} missing")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return base.epoch_ms(value.strip() if isinstance(value, str) else value, where)
    if not isinstance(value, str):
        raise RejectError(WRONG_TYPE, f"{where} must be a string or epoch ms")
    text = value.strip()
    if not _ISO_RE.fullmatch(text):
        raise RejectError(BAD_TIME, f"{where}: not ISO 8601 with offset: {text[:40]!r}")
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise RejectError(BAD_TIME, f"{where}: no such time {text[:40]!r}") from None
    return base.epoch_ms(int(dt.timestamp() * 1000), where)


# --------------------------------------------------------------------------------------------
# Builders (warehouse simulator)


def csv_payload(events: list[WarehouseEvent], *, bom: bool = False) -> bytes:
    """Render events as the CSV feed (event_time in UTC ISO form)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS[:-1])
    for e in events:
        writer.writerow(
            [
                e.event_type.value, e.document_id, e.line_no, e.location, e.sku, e.quantity,
                iso_time(e.event_time_ms), e.counterpart_location or "", e.reason or "",
            ]
        )
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_document(events: list[WarehouseEvent]) -> bytes:
    """Render events sharing one document (same type, location, time, counterpart) as JSON."""
    if not events:
        raise ValueError("a document has at least one line")
    first = events[0]
    shared = {(e.document_id, e.event_type, e.location, e.event_time_ms, e.counterpart_location) for e in events}
    if len(shared) != 1:
        raise ValueError("events of one document share id, type, location, time and counterpart")
    return base.dumps_bytes(
        {
            "document_id": first.document_id,
            "type": first.event_type.value,
            "location": first.location,
            "event_time": iso_time(first.event_time_ms),
            "counterpart_location": first.counterpart_location,
            "lines": [
                {"line_no": e.line_no, "sku": e.sku, "quantity": e.quantity, **({"reason": e.reason} if e.reason else {})}
                for e in events
            ],
        }
    )
