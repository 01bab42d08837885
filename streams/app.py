"""The Faust application: topics, tables, agents and views wired from one Settings object.

Agents are thin: decode a batch record, hand it to a plain processor (streams/normalize.py,
streams/stock.py) together with the table it may read and write, emit what the processor returns.
Every agent runs with concurrency 1 per partition: with more, Faust can commit an offset past an
event still being processed (faust-streaming#606). And every agent iterates through
`in_offset_order`: it processes each partition's records in offset order with no gaps, whatever
Faust's fetcher hands it around restarts and rebalances (streams/in_order.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import faust

from stockstream.settings import Settings
from stockstream.topics import ALLOCATION_COMMANDS, ALLOCATIONS, ATS, INGEST, MOVEMENTS, QUARANTINE, RETRY, SIGNALS
from streams import faust_patches, metrics, table_restore
from streams.changelog import ChangelogSender
from streams.in_order import guard_topics, in_offset_order
from streams.outputs import Outputs
from streams.rewinder import INTERVAL_S as REWIND_INTERVAL_S, faust_rewinder
from streams.tables import TableStore

if TYPE_CHECKING:
    from streams.catalog_feed import CatalogFeed
    from streams.rules_feed import RulesFeed

log = logging.getLogger(__name__)

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass
class Pipeline:
    app: faust.App
    settings: Settings
    orders: faust.Table
    stock: faust.Table
    outputs: Outputs


def create_app(
    settings: Settings, catalog_feed: Optional["CatalogFeed"] = None, rules_feed: Optional["RulesFeed"] = None
) -> Pipeline:
    """`catalog_feed`: the worker's live catalog (streams/catalog_feed.py); the normalize agents
    wait until it has loaded. None: the CSV / identity catalog of `load_catalog`, fixed.
    `rules_feed`: the live allocation rules (streams/rules_feed.py); the stock agent waits until
    they have loaded. None: the defaults from the settings, fixed."""
    faust_patches.install()
    app = faust.App(
        # The prefix is part of the id so that consumer groups and changelog topics of two
        # deployments (or two tests) sharing one cluster never meet.
        settings.topic(settings.app_id),
        broker=[f"kafka://{server}" for server in settings.bootstrap_servers.split(",")],
        store="rocksdb://",
        datadir=str(settings.data_dir),
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        canonical_url=f"http://{settings.web_advertised_host or settings.web_host}:{settings.web_port}",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        # Each record is a batch of hundreds of events: few records per poll keep latency low.
        broker_max_poll_records=200,
        broker_commit_interval=1.0,
        # Batch produce requests a little instead of one request per message.
        producer_linger=0.005,
        producer_acks=-1,
        producer_enable_idempotence=True,
        table_standby_replicas=1,
        consumer_group_instance_id=settings.worker_instance_id(),
        broker_session_timeout=settings.consumer_session_timeout_s,
    )
    # Every agent topic is guarded: processed in offset order, without gaps (streams/in_order.py).
    cursor = guard_topics(app.consumer, [settings.topic(spec.name) for spec in (INGEST, RETRY, MOVEMENTS, ALLOCATION_COMMANDS)])
    rewinder = faust_rewinder(app.consumer, cursor)

    @app.timer(REWIND_INTERVAL_S, traced=False)
    async def rewind_gaps() -> None:
        await rewinder.run_once()

    if settings.table_bulk_restore_min_records:
        table_restore.enable(app, settings.bootstrap_servers, settings.table_bulk_restore_min_records)
    orders = _bytes_table(app, "orders", settings)
    stock = _bytes_table(app, "stock", settings)
    outputs = Outputs(settings.bootstrap_servers)
    changelogs = ChangelogSender(outputs)
    changelogs.attach(orders)
    changelogs.attach(stock)
    # Outputs and changelog records acknowledged before the offsets commit.
    faust_patches.flush_with(app, outputs.flush)
    faust_patches.flush_with(app, changelogs.persist_offsets)
    pipeline = Pipeline(app=app, settings=settings, orders=orders, stock=stock, outputs=outputs)
    _wire_order_agent(pipeline, catalog_feed)
    _wire_stock_agent(pipeline, rules_feed)
    from streams.web import register_views

    register_views(pipeline, catalog_feed, rules_feed)
    return pipeline


def _bytes_table(app: faust.App, name: str, settings: Settings) -> faust.Table:
    """A RocksDB table of bytes -> bytes: processors (de)serialize values themselves (orjson),
    once per key and batch, instead of Faust doing it on every access."""
    options = {
        "driver": "rocksdict",
        "write_buffer_size": settings.table_write_buffer_mb * 2**20,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.table_block_cache_mb * 2**20,
    }
    table = app.Table(name, partitions=settings.partitions, options=options, key_type=bytes, value_type=bytes)
    # Faust derives serializers from Model types only; bytes would otherwise go through JSON.
    table.key_serializer = "raw"
    table.value_serializer = "raw"
    return table


def _topic(app: faust.App, settings: Settings, name: str) -> faust.TopicT:
    return app.topic(settings.topic(name), partitions=settings.partitions, internal=False, **RAW)


def _wire_order_agent(pipeline: Pipeline, catalog_feed: Optional["CatalogFeed"] = None) -> None:
    from streams.normalize import Normalizer
    from streams.retry import retry_origin

    app, settings, outputs = pipeline.app, pipeline.settings, pipeline.outputs
    ingest = _topic(app, settings, INGEST.name)
    retry = _topic(app, settings, RETRY.name)
    movements, quarantine = settings.topic(MOVEMENTS.name), settings.topic(QUARANTINE.name)
    normalizer = Normalizer(settings, catalog_feed.resolver if catalog_feed is not None else None)

    async def catalog_loaded() -> None:
        # Before the catalog is loaded every order would look unmapped.
        while catalog_feed is not None and not catalog_feed.ready.is_set():
            await asyncio.sleep(0.05)

    async def emit(output, started: float) -> None:
        metrics.observe_normalized(output, time.perf_counter() - started)
        for partition, value in output.movement_batches:
            await outputs.send(movements, value, partition=partition)
        for key, value in output.quarantined:
            await outputs.send(quarantine, value, key)
        outputs.poll()

    @app.agent(ingest, name="normalize", concurrency=1)
    async def normalize(stream):
        await catalog_loaded()
        async for event in in_offset_order(app.consumer, stream.noack(), "normalize"):
            started = time.perf_counter()
            partition = event.message.partition
            await emit(normalizer.process(event.value, partition, TableStore(pipeline.orders, partition)), started)

    # Quarantined records re-submitted once the catalog maps them (streams/retry.py): same table,
    # co-partitioned topic, an origin stream of their own.
    @app.agent(retry, name="normalize-retry", concurrency=1)
    async def normalize_retry(stream):
        await catalog_loaded()
        async for event in in_offset_order(app.consumer, stream.noack(), "normalize-retry"):
            message = event.message
            origin = retry_origin(message.partition, message.offset)
            started = time.perf_counter()
            store = TableStore(pipeline.orders, message.partition)
            await emit(normalizer.process(event.value, message.partition, store, origin=origin), started)


def _wire_stock_agent(pipeline: Pipeline, rules_feed: Optional["RulesFeed"] = None) -> None:
    """Movements -> stock, ATS and allocation; and allocation commands (a rule changed) -> the
    same table, re-allocated. Both agents share a lock held from processing through the sends, so
    the records of one SKU leave in the order their versions were given."""
    from streams.allocation_commands import keys_to_reallocate, wait_for_rule
    from stockstream.rules_topic import decode_command
    from streams.stock import StockProcessor

    app, settings, outputs = pipeline.app, pipeline.settings, pipeline.outputs
    movements = _topic(app, settings, MOVEMENTS.name)
    commands = _topic(app, settings, ALLOCATION_COMMANDS.name)
    ats, allocations = settings.topic(ATS.name), settings.topic(ALLOCATIONS.name)
    signals, quarantine = settings.topic(SIGNALS.name), settings.topic(QUARANTINE.name)
    processor = StockProcessor(settings, rules_feed)
    sending = asyncio.Lock()

    async def rules_loaded() -> None:
        # Before the rules are loaded every SKU would be allocated under the settings' defaults.
        while rules_feed is not None and not rules_feed.ready.is_set():
            await asyncio.sleep(0.05)

    async def emit(output, partition: int) -> None:
        metrics.observe_allocation(output)
        for key, value in output.ats_records:
            await outputs.send(ats, value, key)
        # Same partition as the movements: keyed by SKU, co-partitioned.
        for key, value in output.allocation_records:
            await outputs.send(allocations, value, key, partition)
        for key, value in output.signal_records:
            await outputs.send(signals, value, key, partition)
        for key, value in output.quarantined:
            await outputs.send(quarantine, value, key)
        outputs.poll()

    @app.agent(movements, name="stock", concurrency=1)
    async def apply_movements(stream):
        await rules_loaded()
        async for event in in_offset_order(app.consumer, stream.noack(), "stock"):
            message = event.message
            source = (message.topic, message.partition, message.offset)
            async with sending:
                started = time.perf_counter()
                # Synchronous from table get to put: the command agent cannot interleave.
                output = processor.process(event.value, source, TableStore(pipeline.stock, message.partition))
                metrics.observe_stock(output, time.perf_counter() - started)
                await emit(output, message.partition)

    @app.agent(commands, name="allocation-commands", concurrency=1)
    async def apply_commands(stream):
        await rules_loaded()
        async for event in in_offset_order(app.consumer, stream.noack(), "allocation-commands"):
            message = event.message
            try:
                command = decode_command(event.value)
            except ValueError as exc:
                log.warning("allocation command at %s/%d@%d skipped: %s", message.topic, message.partition, message.offset, exc)
                continue
            await wait_for_rule(rules_feed, command)
            async with sending:
                stored = () if command.sku is not None else list(pipeline.stock.keys())
                keys = keys_to_reallocate(command, stored, message.partition, settings.partitions)
                await emit(processor.reallocate(keys, TableStore(pipeline.stock, message.partition)), message.partition)
