"""Warehouse feed adapter: an HTTP endpoint for WMS / bonded-warehouse / 3PL documents and a CSV
file-drop watcher, both publishing to `raw.warehouse` (see `connectors.warehouse` for the CSV
columns and the JSON document shape).

HTTP: `POST /warehouse/documents`, body one JSON document (`Content-Type: application/json`) or
CSV rows (`text/csv`; other types are sniffed: `{` first means JSON). The sender authenticates
with its warehouse's shared token in `X-Warehouse-Token`. Answers:

  401  unknown / missing token; nothing is published or quarantined (anyone can send garbage)
  400  the payload does not parse (all or nothing, `connectors.warehouse.parse`):
       {"error": reason_code, "reason": ...}; the payload is kept in `quarantine` first
  200  {"ok": true, "documents": [ids], "events": n}, only after the broker acknowledged the
       raw records
  503  the raw records (or the quarantine record) could not be stored: send again

Raw records: one per document, key = message-id = document id, headers platform=warehouse,
shop=<the document's location>, kind=json|csv, received-at. A JSON document is published as
received (minus personal-data keys, which a warehouse document should not have anyway); a CSV
body naming a single document is published byte for byte; a CSV body naming several documents
is split into one CSV per document (the header row and each row's values as received).

File drop: every `poll_interval_s` the watcher looks for `*.csv` in `drop_dir` (files younger
than `min_age_s` are left for the next scan: writers should write elsewhere and rename, the age
check only guards against the careless ones). Per file, rows are checked one by one with
`connectors.warehouse.iter_csv`; good rows are grouped by document id and published, one raw
record per document. Rejected rows go to `quarantine` one record each, with their reason. A
document is all or nothing: the good rows of a document that has a rejected row are quarantined
too (reason_code `incomplete_document`), never published half. A structurally broken file
(not UTF-8, no header, bad quoting) is quarantined whole. Only after the broker acknowledged
everything is the file moved: to `processed/` when every row was published, to `rejected/`
when any row was quarantined. A crash before the move re-publishes the file on the next scan;
that is harmless, downstream dedupes warehouse events by (document id, line number).

Quarantine records (`stockstream.QuarantineRecord`) written here never were on a topic:
`source_topic` is the raw.warehouse topic they were meant for, `source_partition` and
`source_offset` are -1, `retryable` is false, headers carry `warehouse` (who sent it) and, for
files, `file` and `row`.

Configuration (`WarehouseFeedSettings`, environment prefix `STOCKSTREAM_WAREHOUSE_`; it is not
part of `stockstream.settings.Settings` yet, a deployment passes it to the adapter):

  STOCKSTREAM_WAREHOUSE_TOKENS='{"HZ-FTZ-01": "<token>", "SH-3PL": "<token>"}'  warehouse -> token
  STOCKSTREAM_WAREHOUSE_HOST / _PORT / _PATH      where the endpoint listens
  STOCKSTREAM_WAREHOUSE_DROP_DIR                  the watched directory (unset: no watcher)
  STOCKSTREAM_WAREHOUSE_POLL_INTERVAL_S / _MIN_AGE_S
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Optional, Sequence, Union

from aiohttp import web
from confluent_kafka import KafkaException, Producer
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors import base, metrics
from connectors import warehouse as feed
from connectors.base import RawHeader, RawRecord, Rejected
from connectors.publisher import RawPublisher
from schemas import codec
from schemas.names import QUARANTINE_RECORD
from stockstream.core.model import WarehouseEvent
from stockstream.settings import Settings
from stockstream.topics import QUARANTINE, RAW_WAREHOUSE

log = logging.getLogger(__name__)

TOKEN_HEADER = "X-Warehouse-Token"
INCOMPLETE_DOCUMENT = "incomplete_document"
UNSUPPORTED_MEDIA = "unsupported_media_type"
_JSON_TYPES = {"application/json", "text/json"}
_CSV_TYPES = {"text/csv", "application/csv", "text/comma-separated-values"}
_SNIFF_TYPES = {"", "application/octet-stream", "text/plain"}


class WarehouseFeedSettings(BaseSettings):
    """How the warehouse adapter is configured (see the module docstring)."""

    model_config = SettingsConfigDict(env_prefix="STOCKSTREAM_WAREHOUSE_", extra="ignore")

    tokens: dict[str, SecretStr] = {}  # warehouse id -> shared token
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests, `stockstream simulate`)
    path: str = "/warehouse/documents"
    drop_dir: Optional[Path] = None
    poll_interval_s: float = 2.0
    min_age_s: float = 1.0


# --------------------------------------------------------------------------------------------
# Quarantine


QuarantineItem = tuple[Optional[bytes], bytes]  # (key, encoded QuarantineRecord)


class QuarantinePublisher:
    """Writes QuarantineRecords to the quarantine topic; returns once the broker has them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.topic(QUARANTINE.name)
        self._producer = Producer(
            {"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )

    def publish(self, items: Sequence[QuarantineItem], timeout: float = 30.0) -> int:
        failures: list[Any] = []

        def on_delivery(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        for key, value in items:
            while True:
                try:
                    self._producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)
        if self._producer.flush(timeout) or failures:
            raise KafkaException(failures[0] if failures else "quarantine records not acknowledged in time")
        return len(items)


def quarantine_record(
    source_topic: str, key: Optional[str], value: bytes, headers: Mapping[str, str], reason_code: str, reason: str
) -> QuarantineItem:
    encoded_key = key.encode("utf-8") if key else None
    return encoded_key, codec.encode(
        QUARANTINE_RECORD,
        {
            "source_topic": source_topic,
            "source_partition": -1,
            "source_offset": -1,
            "key": encoded_key,
            "value": bytes(value),
            "headers": dict(headers),
            "reason_code": reason_code,
            "reason": reason,
            "quarantined_at_ms": base_now_ms(),
            "retryable": False,
        },
    )


def base_now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# CSV helpers


@dataclass
class CsvRow:
    row_no: int  # line number in the file where the row ends (csv.DictReader.line_num)
    values: dict[str, str]


def read_rows(data: bytes) -> tuple[list[str], list[CsvRow]]:
    """Header and rows of a CSV feed as the parser reads them; raises RejectError for a broken file."""
    if len(data) > base.MAX_PAYLOAD_BYTES:
        raise base.RejectError(base.TOO_LARGE, f"{len(data)} bytes exceeds {base.MAX_PAYLOAD_BYTES}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise base.RejectError(base.BAD_ENCODING, f"not UTF-8 at byte {exc.start}") from None
    if "\x00" in text:
        raise base.RejectError(base.BAD_ENCODING, "NUL character in CSV")
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        fields = list(reader.fieldnames or [])
        if not fields:
            raise base.RejectError(base.WRONG_SHAPE, "empty CSV: no header row")
        rows = [CsvRow(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        raise base.RejectError(base.WRONG_SHAPE, f"CSV: {str(exc)[:100]}") from None
    return fields, rows


def render_csv(fields: Sequence[str], rows: Sequence[CsvRow]) -> bytes:
    """Rows under their original header, values as received (rows with too many / few columns
    are rendered as far as they go; they are only ever quarantined)."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(fields)
    for row in rows:
        values = [row.values.get(f) or "" for f in fields]
        extra = row.values.get(None)  # type: ignore[call-overload]
        if isinstance(extra, list):
            values.extend(extra)
        writer.writerow(values)
    return out.getvalue().encode("utf-8")


# --------------------------------------------------------------------------------------------
# The adapter


PublishRaw = Callable[[list[RawRecord]], Awaitable[None]]
PublishQuarantine = Callable[[list[QuarantineItem]], Awaitable[None]]


@dataclass
class FileOutcome:
    path: Path
    published: list[str]  # document ids
    quarantined: int  # quarantine records written
    moved_to: Optional[Path]


class WarehouseAdapter:
    platform = feed.PLATFORM

    def __init__(
        self,
        publisher: RawPublisher,
        config: Optional[WarehouseFeedSettings] = None,
        *,
        quarantine: Optional[QuarantinePublisher] = None,
        settings: Optional[Settings] = None,
        **overrides: Any,
    ) -> None:
        """`config` (default: from the environment) with `overrides` applied, e.g.
        `WarehouseAdapter(publisher, tokens={"WH-1": "secret"}, drop_dir=path)`."""
        config = config or WarehouseFeedSettings()
        if overrides:
            config = WarehouseFeedSettings(**{**config.model_dump(), **overrides})
        self.config = config
        self.publisher = publisher
        self.settings = settings or publisher.settings
        self.quarantine = quarantine or QuarantinePublisher(self.settings)
        self.raw_topic = self.settings.topic(RAW_WAREHOUSE.name)
        self._tokens = [(wid, tok.get_secret_value().encode()) for wid, tok in config.tokens.items() if tok.get_secret_value()]
        self.counters: Counter[str] = Counter()
        self.url = ""
        self.port = config.port
        self._runner: Optional[web.AppRunner] = None
        # Test seam: awaited after a file's records were stored, before the file is moved.
        self.before_move: Optional[Callable[[Path], Awaitable[None]]] = None

    # ---------------------------------------------------------------- sinks

    async def _publish(self, records: list[RawRecord]) -> None:
        if records:
            await asyncio.to_thread(self.publisher.publish, self.platform, records)
            self.counters["published"] += len(records)

    async def _quarantine(self, items: list[QuarantineItem]) -> None:
        if items:
            await asyncio.to_thread(self.quarantine.publish, items)
            self.counters["quarantined"] += len(items)

    # ---------------------------------------------------------------- documents -> raw records

    def authenticate(self, token: Optional[str]) -> Optional[str]:
        """The warehouse whose token this is (compared in constant time), or None."""
        if not token:
            return None
        given = token.encode()
        found = None
        for warehouse_id, expected in self._tokens:
            if hmac.compare_digest(given, expected):
                found = warehouse_id
        return found

    def records_for(self, data: bytes, kind: str, events: Sequence[WarehouseEvent], received_ms: int) -> list[RawRecord]:
        """One raw record per document of a payload that parsed."""
        if kind == feed.KIND_JSON:
            first = events[0]
            return [
                base.raw_record(
                    platform=self.platform, shop=first.location, kind=kind, key=first.document_id,
                    payload=data, received_at_ms=received_ms, message_id=first.document_id,
                )
            ]
        documents = list(dict.fromkeys(e.document_id for e in events))
        if len(documents) == 1:
            return [self._csv_record(documents[0], events[0].location, bytes(data), received_ms)]
        fields, rows = read_rows(data)
        by_doc: dict[str, list[CsvRow]] = {}
        for event, row in zip(events, rows):
            by_doc.setdefault(event.document_id, []).append(row)
        location = {e.document_id: e.location for e in reversed(events)}
        return [self._csv_record(doc, location[doc], render_csv(fields, rows_), received_ms) for doc, rows_ in by_doc.items()]

    def _csv_record(self, document_id: str, location: str, payload: bytes, received_ms: int) -> RawRecord:
        # CSV cannot go through `raw_record` (its PII stripping reads JSON); the feed's columns
        # are fixed and carry no personal data.
        return RawRecord(
            key=document_id,
            value=payload,
            headers={
                RawHeader.PLATFORM: self.platform,
                RawHeader.SHOP: location,
                RawHeader.KIND: feed.KIND_CSV,
                RawHeader.RECEIVED_AT: str(received_ms),
                RawHeader.MESSAGE_ID: document_id,
            },
        )

    # ---------------------------------------------------------------- HTTP

    async def start(self) -> str:
        """Listen; returns the endpoint URL."""
        app = web.Application(client_max_size=base.MAX_PAYLOAD_BYTES + 64 * 1024)
        app.router.add_post(self.config.path, self._receive)
        app.router.add_get("/metrics", _metrics)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.config.host}:{self.port}{self.config.path}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self, stop: Optional[asyncio.Event] = None) -> None:
        """The endpoint and, with `drop_dir` configured, the file watcher, until `stop` is set."""
        stop = stop or asyncio.Event()
        await self.start()
        try:
            if self.config.drop_dir is not None:
                await self.watch(stop)
            else:
                await stop.wait()
        finally:
            await self.stop()

    async def _receive(self, request: web.Request) -> web.Response:
        warehouse_id = self.authenticate(request.headers.get(TOKEN_HEADER))
        if warehouse_id is None:
            self.counters["unauthorized"] += 1
            metrics.rejected(self.platform, metrics.BAD_TOKEN)
            return web.json_response({"error": "unauthorized", "reason": f"missing or unknown {TOKEN_HEADER}"}, status=401)
        try:
            data = await request.read()
        except web.HTTPRequestEntityTooLarge:
            # Not read, so it cannot be kept; the sender still has it.
            self.counters["too_large"] += 1
            metrics.rejected(self.platform, metrics.TOO_LARGE)
            return web.json_response({"error": base.TOO_LARGE, "reason": "body too large"}, status=413)
        received = base_now_ms()
        content_type = request.content_type.lower()
        headers = {
            RawHeader.PLATFORM: self.platform,
            RawHeader.SHOP: warehouse_id,
            RawHeader.RECEIVED_AT: str(received),
            "warehouse": warehouse_id,
            "content-type": content_type,
        }
        kind = self._kind(content_type, data)
        if kind is None:
            outcome: Union[tuple[WarehouseEvent, ...], Rejected] = Rejected(
                UNSUPPORTED_MEDIA, f"Content-Type {content_type[:60]!r}: send application/json or text/csv"
            )
        else:
            headers[RawHeader.KIND] = kind
            outcome = feed.parse(data, {RawHeader.KIND: kind})
        if isinstance(outcome, Rejected):
            return await self._reject(data, headers, outcome)
        if not outcome:
            outcome = Rejected(base.WRONG_SHAPE, "no rows")
            return await self._reject(data, headers, outcome)
        try:
            records = self.records_for(data, kind or feed.KIND_JSON, outcome, received)
            await self._publish(records)
        except (ValueError, base.RejectError) as exc:  # cannot happen for a payload that parsed
            return await self._reject(data, headers, Rejected(base.PARSER_ERROR, str(exc)[:200]))
        except Exception as exc:
            self.counters["store_failed"] += 1
            log.warning("warehouse document from %s not stored: %s", warehouse_id, exc)
            return web.json_response({"error": "unavailable", "reason": "not stored; send again"}, status=503)
        self.counters["documents_accepted"] += len(records)
        metrics.written(self.platform, len(records))
        return web.json_response({"ok": True, "documents": [r.key for r in records], "events": len(outcome)})

    @staticmethod
    def _kind(content_type: str, data: bytes) -> Optional[str]:
        if content_type in _JSON_TYPES:
            return feed.KIND_JSON
        if content_type in _CSV_TYPES:
            return feed.KIND_CSV
        if content_type in _SNIFF_TYPES:
            return feed.KIND_JSON if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{" else feed.KIND_CSV
        return None

    async def _reject(self, data: bytes, headers: dict[str, str], rejected: Rejected) -> web.Response:
        key = _document_id_of(data)
        try:
            await self._quarantine(
                [quarantine_record(self.raw_topic, key, data, headers, rejected.reason_code, rejected.reason)]
            )
        except Exception as exc:
            self.counters["store_failed"] += 1
            log.warning("invalid warehouse payload could not be quarantined: %s", exc)
            return web.json_response({"error": "unavailable", "reason": "not stored; send again"}, status=503)
        self.counters["rejected"] += 1
        metrics.rejected(self.platform, metrics.MALFORMED)
        status = 415 if rejected.reason_code == UNSUPPORTED_MEDIA else 400
        return web.json_response({"error": rejected.reason_code, "reason": rejected.reason}, status=status)

    # ---------------------------------------------------------------- file drop

    async def watch(self, stop: asyncio.Event) -> None:
        """Scan `drop_dir` every `poll_interval_s` until `stop` is set."""
        while not stop.is_set():
            try:
                await self.scan()
            except Exception as exc:
                log.warning("warehouse drop directory scan failed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.config.poll_interval_s)
            except asyncio.TimeoutError:
                pass

    async def scan(self) -> list[FileOutcome]:
        """Process every ready `*.csv` in the drop directory once; files that fail stay for the
        next scan."""
        directory = self.config.drop_dir
        if directory is None:
            raise ValueError("no drop_dir configured")
        directory = Path(directory)
        outcomes = []
        now = time.time()
        for path in sorted(directory.glob("*.csv")):
            try:
                if now - path.stat().st_mtime < self.config.min_age_s:
                    continue
                outcomes.append(await self.process_file(path))
            except FileNotFoundError:
                continue  # moved away meanwhile
            except Exception as exc:
                self.counters["file_failed"] += 1
                log.warning("warehouse file %s not processed (will retry): %s", path.name, exc)
        return outcomes

    async def process_file(self, path: Path) -> FileOutcome:
        data = await asyncio.to_thread(path.read_bytes)
        received = base_now_ms()
        records, quarantined = self.split_file(path.name, data, received)
        await self._publish(records)
        await self._quarantine(quarantined)
        if self.before_move is not None:
            await self.before_move(path)
        target_dir = path.parent / ("rejected" if quarantined else "processed")
        target = await asyncio.to_thread(_move, path, target_dir)
        self.counters["files_processed" if not quarantined else "files_rejected"] += 1
        if quarantined:
            log.warning("warehouse file %s: %d documents published, %d records quarantined", path.name, len(records), len(quarantined))
        return FileOutcome(path, [r.key for r in records], len(quarantined), target)

    def split_file(self, name: str, data: bytes, received_ms: int) -> tuple[list[RawRecord], list[QuarantineItem]]:
        """(raw records: one per complete, valid document; quarantine records)."""
        file_headers = {
            RawHeader.PLATFORM: self.platform,
            RawHeader.KIND: feed.KIND_CSV,
            RawHeader.RECEIVED_AT: str(received_ms),
            "file": name,
        }

        def whole_file(rejected: Rejected) -> tuple[list[RawRecord], list[QuarantineItem]]:
            return [], [quarantine_record(self.raw_topic, None, data, file_headers, rejected.reason_code, rejected.reason)]

        try:
            fields, rows = read_rows(data)
        except base.RejectError as exc:
            return whole_file(Rejected(exc.code, exc.reason))
        outcomes = list(feed.iter_csv(data))
        if len(outcomes) != len(rows):  # a file-level failure the parser saw and we did not
            first = next((o for o in outcomes if isinstance(o, Rejected)), Rejected(base.PARSER_ERROR, "rows and outcomes disagree"))
            return whole_file(first)

        quarantined: list[QuarantineItem] = []
        good: dict[str, list[tuple[CsvRow, WarehouseEvent]]] = {}
        bad_docs: dict[str, list[int]] = {}
        for row, outcome in zip(rows, outcomes):
            doc = (row.values.get("document_id") or "").strip()
            if isinstance(outcome, Rejected):
                headers = {**file_headers, RawHeader.SHOP: (row.values.get("location") or "").strip(), "row": str(row.row_no)}
                quarantined.append(
                    quarantine_record(self.raw_topic, doc or None, render_csv(fields, [row]), headers, outcome.reason_code, outcome.reason)
                )
                if doc:
                    bad_docs.setdefault(doc, []).append(row.row_no)
                continue
            good.setdefault(outcome.document_id, []).append((row, outcome))

        records: list[RawRecord] = []
        for doc, items in good.items():
            doc_rows = [r for r, _ in items]
            payload = render_csv(fields, doc_rows)
            location = items[0][1].location
            headers = {**file_headers, RawHeader.SHOP: location, "rows": ",".join(str(r.row_no) for r in doc_rows)}
            rejected: Optional[Rejected] = None
            if doc in bad_docs:
                rejected = Rejected(
                    INCOMPLETE_DOCUMENT,
                    f"document {doc}: rows {bad_docs[doc]} were rejected; its other rows are held back "
                    "(a document is all or nothing)",
                )
            else:
                check = feed.parse(payload, {RawHeader.KIND: feed.KIND_CSV})  # e.g. duplicate line numbers
                if isinstance(check, Rejected):
                    rejected = check
            if rejected is not None:
                quarantined.append(quarantine_record(self.raw_topic, doc, payload, headers, rejected.reason_code, rejected.reason))
                continue
            records.append(self._csv_record(doc, location, payload, received_ms))
        return records, quarantined


def _move(path: Path, directory: Path) -> Path:
    directory.mkdir(exist_ok=True)
    target = directory / path.name
    if target.exists():
        target = directory / f"{path.stem}.{base_now_ms()}{path.suffix}"
    os.replace(path, target)
    return target


def _document_id_of(data: bytes) -> Optional[str]:
    """The document id of an invalid payload when it can be seen (quarantine record key)."""
    try:
        doc = base.loads_json(data.decode("utf-8-sig"))
    except Exception:
        doc = None
    if isinstance(doc, dict):
        value = doc.get("document_id")
        return str(value)[:128] if isinstance(value, (str, int)) and str(value).strip() else None
    try:
        _, rows = read_rows(data)
    except Exception:
        return None
    ids = {(r.values.get("document_id") or "").strip() for r in rows} - {""}
    return next(iter(ids)) if len(ids) == 1 else None


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")
