"""Reading the ledger (`movements` topic) back: to rebuild every SKU's stock into fresh state and
compare, or to answer "what was ATS of SKU X at time T".

Replay applies the same core (`stockstream.core.stock`) to the same movements in the same order,
so re-emitted duplicates are dropped by the same origin marks and the numbers are identical to the
live tables'. Time travel filters by the movements' *event time* (when the stock moved at the
platform or warehouse), not by when stockstream learned about it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Iterable, Iterator, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas.batches import decode_movements
from schemas.errors import CodecError
from stockstream.core.movements import Movement, MovementType
from stockstream.core.stock import StockState, apply_movements
from stockstream.settings import Settings
from stockstream.topics import MOVEMENTS
from streams.partitioning import partition_for


def read_ledger(
    settings: Settings,
    partitions: Optional[Iterable[int]] = None,
    on_progress: Optional[Callable[[int, int], None]] = None,
) -> Iterator[Movement]:
    """Every movement in the ledger up to its current end, partition by partition, in log order.
    `on_progress(records_read, records_total)` is called as batch records are read."""
    topic = settings.topic(MOVEMENTS.name)
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": "stockstream-ledger-reader",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        wanted = list(range(settings.partitions)) if partitions is None else list(partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in wanted}
        total = sum(high - low for low, high in ends.values())
        read = 0
        for partition in wanted:
            low, high = ends[partition]
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            position = low
            while position < high:
                for message in consumer.consume(num_messages=500, timeout=1.0):
                    if message.error() is not None or message.offset() >= high:
                        continue
                    position = message.offset() + 1
                    read += 1
                    try:
                        yield from decode_movements(message.value())
                    except CodecError:
                        continue  # quarantined when the stock agent met it; nothing to apply
                if on_progress is not None:
                    on_progress(read, total)
    finally:
        consumer.close()


def rebuild(movements: Iterable[Movement], as_of_ms: Optional[int] = None, skus: Optional[set[str]] = None) -> dict[str, StockState]:
    """Fresh stock states from movements in ledger order (optionally only those that had
    happened by `as_of_ms`, only for `skus`)."""
    states: dict[str, StockState] = {}
    for movement in movements:
        if skus is not None and movement.sku not in skus:
            continue
        if as_of_ms is not None:
            if movement.event_time_ms > as_of_ms:
                continue
            movement = _as_seen_at(movement, as_of_ms)
        state, _applied = apply_movements(states.get(movement.sku), (movement,))
        states[movement.sku] = state
    return states


def _as_seen_at(movement: Movement, as_of_ms: int) -> Movement:
    """A re-dated shipment whose original SHIP lies after `as_of_ms` (and was therefore left out)
    is, seen from `as_of_ms`, the shipment itself at its corrected time."""
    previous_ms = movement.previous_event_time_ms
    if movement.type is MovementType.SHIP_REDATE and previous_ms is not None and previous_ms > as_of_ms:
        return replace(movement, type=MovementType.SHIP, previous_event_time_ms=None)
    return movement


def stock_as_of(settings: Settings, sku: str, as_of_ms: int) -> Optional[StockState]:
    """One SKU's stock at a moment, from the one ledger partition that holds it."""
    partition = partition_for(sku.encode(), settings.partitions)
    return rebuild(read_ledger(settings, [partition]), as_of_ms=as_of_ms, skus={sku}).get(sku)
