"""What the platform adapters (the I/O half of the connectors) share.

Delivery contract: an adapter hands raw records to a `Sink` and acknowledges the platform's
delivery (TMC confirm, Douyin success answer, PDD Ack, JD cursor) only after the sink returned.
The production sink is `KafkaSink` (RawPublisher: idempotent, acks=all, returns once the broker
has the records). `records_from` turns the same code path into the `Connector.poll` / `push`
async iterators: there the acknowledgement happens when the consumer of the iterator comes back
for the next record after the last record of a batch, i.e. the consumer must have stored a
record before it asks for the next one.

Stock-write outcomes are `StockWriteResult`s: `Written`, `Throttled` (the platform's throttle
code; `retry_after_s` says when to try again; not retried here, the sink coalesces and waits),
`Failed` (permanent: bad SKU, bad token, bad arguments; or transient errors that outlived the
retries, with `permanent=False`). Transient errors (HTTP 5xx, connection errors, the platforms'
"temporarily unavailable" codes) are retried with tenacity.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping, Optional, Sequence

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from connectors import metrics
from connectors.base import EMPTY_HEADERS, ParseOutcome, RawRecord, StockWrite, StockWriteResult
from connectors.dedupe import DeliveryLog, Seen, load_recent, restore
from connectors.publisher import RawPublisher
from connectors.registry import get_connector
from stockstream.settings import Settings, ShopCredentials

log = logging.getLogger(__name__)

Sink = Callable[[str, list[RawRecord]], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


def secret(shop: ShopCredentials) -> str:
    return shop.app_secret.get_secret_value()


def token(shop: ShopCredentials) -> str:
    return shop.access_token.get_secret_value()


# --------------------------------------------------------------------------------------------
# Sinks


class KafkaSink:
    """Publishes to raw.<platform> and returns once the broker acknowledged every record."""

    def __init__(self, publisher: RawPublisher) -> None:
        self.publisher = publisher

    async def __call__(self, platform: str, records: list[RawRecord]) -> None:
        if records:
            await asyncio.to_thread(self.publisher.publish, platform, records)


async def records_from(work: Callable[[Sink], Awaitable[Any]]) -> AsyncIterator[RawRecord]:
    """Run `work(sink)` and yield what it hands to the sink. The sink call returns (and `work`
    goes on to acknowledge the platform) only when the consumer asks for the record after a
    batch's last one. Closing the iterator early cancels `work`: nothing unconsumed is acked."""
    queue: asyncio.Queue[tuple[list[RawRecord], asyncio.Future[None]]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def sink(_platform: str, records: list[RawRecord]) -> None:
        if not records:
            return
        done: asyncio.Future[None] = loop.create_future()
        await queue.put((records, done))
        await done

    task = asyncio.ensure_future(work(sink))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            finished, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in finished:
                records, done = getter.result()
                for record in records:
                    yield record
                if not done.done():
                    done.set_result(None)
                continue
            getter.cancel()
            task.result()  # re-raise what `work` raised
            return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


# --------------------------------------------------------------------------------------------
# Errors and write results


class ApiError(Exception):
    """A platform error response."""

    def __init__(self, code: str, message: str, sub_code: str = "") -> None:
        super().__init__(f"{code} {sub_code} {message}".strip())
        self.code = code
        self.message = message
        self.sub_code = sub_code


class TransientApiError(ApiError):
    """Worth retrying soon: server error, temporarily unavailable, connection trouble."""


class ThrottledError(ApiError):
    def __init__(self, code: str, message: str, sub_code: str = "", retry_after_s: float = 1.0) -> None:
        super().__init__(code, message, sub_code)
        self.retry_after_s = retry_after_s


class PermanentApiError(ApiError):
    """Retrying the same request cannot help (bad signature, token, arguments, unknown SKU)."""


@dataclass(frozen=True)
class Written(StockWriteResult):
    pass


@dataclass(frozen=True)
class Throttled(StockWriteResult):
    pass


@dataclass(frozen=True)
class Failed(StockWriteResult):
    permanent: bool = True


def written(write: StockWrite) -> StockWriteResult:
    return Written(write=write, ok=True)


def result_for_error(write: StockWrite, exc: BaseException) -> StockWriteResult:
    if isinstance(exc, ThrottledError):
        return Throttled(write=write, ok=False, retry_after_s=exc.retry_after_s, error_code=exc.code, error=str(exc))
    if isinstance(exc, PermanentApiError):
        return Failed(write=write, ok=False, error_code=exc.code, error=str(exc), permanent=True)
    code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
    return Failed(write=write, ok=False, error_code=code, error=str(exc), permanent=False)


RETRYABLE = (TransientApiError, aiohttp.ClientError, asyncio.TimeoutError)


async def with_retries(call: Callable[[], Awaitable[Any]], attempts: int = 4, max_wait_s: float = 2.0) -> Any:
    """`call()` again on transient errors (exponential backoff with jitter); others propagate."""
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=0.05, max=max_wait_s),
        retry=retry_if_exception_type(RETRYABLE),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")


async def with_throttle_waits(call: Callable[[], Awaitable[Any]], max_waits: int = 20, max_wait_s: float = 30.0) -> Any:
    """For reads on the ingest path (nothing may be skipped): wait out throttles, retry
    transient errors; permanent errors and exhausted waits propagate."""
    for _ in range(max_waits):
        try:
            return await with_retries(call)
        except ThrottledError as exc:
            await asyncio.sleep(min(max(exc.retry_after_s, 0.05), max_wait_s))
    return await with_retries(call)


def check_http(response: aiohttp.ClientResponse) -> None:
    if response.status >= 500 or response.status == 429:
        raise TransientApiError(str(response.status), f"HTTP {response.status}")
    if response.status >= 400:
        raise PermanentApiError(str(response.status), f"HTTP {response.status}")


# --------------------------------------------------------------------------------------------
# Shops


class ShopBook:
    """The shops of one platform an adapter serves, by shop id and by app key."""

    def __init__(self, platform: str, shops: Iterable[ShopCredentials]) -> None:
        self.platform = platform
        self.shops = [s for s in shops if s.platform == platform]
        if not self.shops:
            raise ValueError(f"no {platform} shops configured")
        self.by_id = {s.shop_id: s for s in self.shops}

    def apps(self) -> dict[tuple[str, str], list[ShopCredentials]]:
        """Shops grouped by (app key, API base URL): one message channel each."""
        out: dict[tuple[str, str], list[ShopCredentials]] = {}
        for shop in self.shops:
            out.setdefault((shop.app_key, shop.api_base_url), []).append(shop)
        return out

    def get(self, shop_id: Any) -> Optional[ShopCredentials]:
        return self.by_id.get(str(shop_id)) if shop_id is not None else None

    def secret_of_app(self, app_key: str) -> Optional[str]:
        for shop in self.shops:
            if shop.app_key == app_key:
                return secret(shop)
        return None


class AdapterBase:
    """Counters, metrics, the HTTP session, the sink and the delivery log every adapter has.

    Dedupe (see `connectors.dedupe`): `restore_delivered()` (called when an adapter starts
    running) fills `delivered` from the tail of raw.<platform>; adapters ask `delivered.state(id)`
    for each delivery, write only NEW ones, fetch a follow-up snapshot unless COMPLETE, and mark
    ids after the sink returned. Without Kafka settings (a bare sink) the log starts empty."""

    platform = ""
    # Record kinds holding a snapshot fetched for a delivery (Tmall fullinfo, Douyin detail, ...).
    followup_kinds: tuple[str, ...] = ()
    # Platform error codes that mean "your signature" / "your timestamp" was refused.
    signature_codes: frozenset[str] = frozenset()
    timestamp_codes: frozenset[str] = frozenset()

    def __init__(
        self,
        shops: Iterable[ShopCredentials],
        publisher: Optional[RawPublisher] = None,
        *,
        sink: Optional[Sink] = None,
        http: Optional[aiohttp.ClientSession] = None,
        request_timeout_s: float = 10.0,
        settings: Optional[Settings] = None,
        dedupe_window_s: Optional[float] = None,
        dedupe_max_ids: Optional[int] = None,
    ) -> None:
        self.book = ShopBook(self.platform, shops)
        if sink is None:
            if publisher is None:
                raise ValueError("an adapter needs a publisher or a sink")
            sink = KafkaSink(publisher)
        self.sink: Sink = sink
        self.settings = settings or (publisher.settings if publisher is not None else None)
        if dedupe_window_s is None:
            dedupe_window_s = self.settings.adapter_dedupe_window_s if self.settings is not None else 3600.0
        if dedupe_max_ids is None:
            dedupe_max_ids = self.settings.adapter_dedupe_max_ids if self.settings is not None else 500_000
        self.delivered = DeliveryLog(dedupe_window_s, dedupe_max_ids)
        self._restored = False
        self._http = http
        self._own_http = http is None
        self.request_timeout_s = request_timeout_s
        self.counters: Counter[str] = Counter()
        # Test seam: awaited after records were published and before the platform is told.
        self.before_ack: Optional[Callable[[list[RawRecord]], Awaitable[None]]] = None

    # The pure half (signing, parsing) is the platform module's; delegated so that an adapter is
    # a whole `connectors.base.Connector`.
    def sign(self, params: Mapping[str, str], secret: str) -> str:
        return get_connector(self.platform).sign(params, secret)

    def parse(self, payload: bytes, headers: Mapping[str, str] = EMPTY_HEADERS) -> ParseOutcome:
        return get_connector(self.platform).parse(payload, headers)

    @property
    def bad_signatures(self) -> int:
        return self.counters[metrics.BAD_SIGNATURE]

    # ---------------------------------------------------------------- counting

    def reject(self, reason: str) -> None:
        """Count input refused on an inbound channel (`connectors.metrics.REASONS`)."""
        self.counters[reason] += 1
        metrics.rejected(self.platform, reason)

    def note_api_error(self, error: "ApiError") -> "ApiError":
        """Count a platform's refusal of our signature or timestamp; returns the error to raise."""
        codes = {error.code, f"{error.code}/{error.sub_code}"}  # some platforms say it in sub_code
        if codes & self.signature_codes:
            self.reject(metrics.BAD_SIGNATURE)
        elif codes & self.timestamp_codes:
            self.reject(metrics.STALE_TIMESTAMP)
        return error

    def stock_results(self, results: Sequence[StockWriteResult]) -> Sequence[StockWriteResult]:
        """Count stock-write outcomes; returns `results`."""
        for r in results:
            if r.ok:
                outcome = "written"
            elif isinstance(r, Throttled):
                outcome = "throttled"
            elif isinstance(r, Failed) and not r.permanent:
                outcome = "failed_transient"
            else:
                outcome = "failed"
            metrics.stock_write(self.platform, outcome)
        return results

    # ---------------------------------------------------------------- dedupe

    async def restore_delivered(self, attempts: int = 3) -> int:
        """Read back the message ids of the last `window_s` from raw.<platform> (once per
        adapter). Failing that, start with an empty log: duplicates are harmless downstream,
        and a platform waiting for acknowledgements is not."""
        if self._restored or self.settings is None:
            self._restored = True
            return 0
        shops = [s.shop_id for s in self.book.shops]
        for attempt in range(attempts):
            try:
                recent = await asyncio.to_thread(
                    load_recent, self.settings, self.platform, shops, self.delivered.window_s, self.followup_kinds
                )
            except Exception as exc:
                log.warning("%s: recent message ids could not be read (attempt %d): %s", self.platform, attempt + 1, exc)
                await asyncio.sleep(0.5 * 2**attempt)
                continue
            self._restored = True
            n = restore(self.delivered, recent)
            self.counters["restored_ids"] = n
            return n
        self._restored = True
        return 0

    def seen(self, message_id: Optional[str]) -> Seen:
        return self.delivered.state(message_id)

    def count_deliveries(self, written: int, duplicates: int) -> None:
        self.counters["duplicates"] += duplicates
        metrics.written(self.platform, written)
        metrics.duplicate(self.platform, duplicates)

    # ---------------------------------------------------------------- I/O

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.request_timeout_s))
            self._own_http = True
        return self._http

    async def close(self) -> None:
        if self._own_http and self._http is not None and not self._http.closed:
            await self._http.close()

    async def publish(self, records: list[RawRecord], sink: Optional[Sink] = None) -> None:
        """Hand records to the sink (default: the adapter's), then run the test seam; the caller
        acknowledges the platform's delivery afterwards."""
        await (sink or self.sink)(self.platform, records)
        self.counters["published"] += len(records)
        if self.before_ack is not None:
            await self.before_ack(records)


async def sleep_unless_stopped(seconds: float, stop: Optional[asyncio.Event]) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


def group_writes(writes: Sequence[Any], key: Callable[[Any], Any]) -> dict[Any, list[Any]]:
    out: dict[Any, list[Any]] = {}
    for w in writes:
        out.setdefault(key(w), []).append(w)
    return out
