"""Run one stockstream worker process: the ingest batcher thread plus the Faust worker."""

from __future__ import annotations

import logging

import faust
import mode

from stockstream import compiled
from stockstream.settings import Settings
from stockstream.topics import changelog_topic, ensure_topics
from streams import gc_tuning, metrics
from streams.app import create_app
from streams.catalog_feed import CatalogFeed, CatalogFeedService
from streams.ingest import IngestBatcher
from streams.rules_feed import RulesFeed, rules_feed_service
from streams.worker_metrics import WorkerMetricsService

log = logging.getLogger(__name__)


class IngestBatcherService(mode.Service):
    """Ties the batcher thread's life to the worker's: started with it, stopped with it, and a
    failed batcher crashes the worker so that the orchestrator restarts the whole process."""

    def __init__(self, settings: Settings, **kwargs) -> None:
        super().__init__(**kwargs)
        self.batcher = IngestBatcher(settings)

    async def on_start(self) -> None:
        self.batcher.start()

    async def on_stop(self) -> None:
        self.batcher.stop()

    @mode.Service.timer(1.0)
    async def _watch(self) -> None:
        metrics.BATCHER_ALIVE.set(1 if self.batcher.alive else 0)
        if self.batcher.failure is not None:
            await self.crash(self.batcher.failure)


def report_build() -> bool:
    """Logs and exports whether the hot path runs compiled (stockstream/compiled.py). A build
    compiled only in part counts as pure, and the modules left in Python are named."""
    status = compiled.compiled_modules()
    is_compiled = all(status.values())
    if is_compiled:
        log.info("hot path compiled: %d modules", len(status))
    elif any(status.values()):
        log.warning("hot path partly compiled; pure Python: %s", ", ".join(n for n, c in status.items() if not c))
    else:
        log.info("hot path in pure Python (a compiled build: stockstream/compiled.py)")
    metrics.HOT_PATH_COMPILED.set(1 if is_compiled else 0)
    return is_compiled


def run_worker(settings: Settings) -> None:
    ensure_topics(settings)
    # The tables' changelog topics too, before Faust starts. Faust declares them itself and then
    # checks their partition count in its consumer's metadata; on a loaded broker a topic created
    # a moment before is not in it yet, and the stock agent crashes for good ("the changelog has
    # 0 partitions", PartitionsMismatch) while the process stays up doing nothing.
    ensure_topics(settings, tuple(changelog_topic(settings.app_id, table) for table in ("orders", "stock")))
    feed = CatalogFeed(settings)
    rules = RulesFeed(settings)
    gc_tuning.configure(settings.gc_thresholds)
    pipeline = create_app(settings, catalog_feed=feed, rules_feed=rules)

    @pipeline.app.task
    async def report_hot_path() -> None:  # a task: runs once Faust has set up logging
        report_build()

    @pipeline.app.task
    async def freeze_startup_objects() -> None:  # a task: the app and its services exist by now
        gc_tuning.freeze_startup()

    from streams.retry import RetrierService

    services = (
        IngestBatcherService(settings), CatalogFeedService(feed), rules_feed_service(rules), RetrierService(settings, feed),
        WorkerMetricsService(pipeline.app, {"orders": pipeline.orders, "stock": pipeline.stock}, settings.topic("")),
    )
    worker = faust.Worker(pipeline.app, *services, loglevel=settings.log_level, quiet=True)
    # Faust's spinner sets the root logger to DEBUG at WARN level: every debug call in faust and
    # aiokafka then builds a LogRecord (~10% CPU measured). Workers run without it.
    worker.spinner = None
    worker.execute_from_commandline()
