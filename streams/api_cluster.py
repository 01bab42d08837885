"""Which worker owns which partitions of a table right now (the partition assignor knows, from the
last rebalance, with each member's URL), and asking them: one owner for a key lookup, all of them
for a list query (scatter-gather).

Key lookups: the SKU's partition is hashed exactly as Faust's router does (streams/partitioning.py)
and the request forwarded to its owner. Faust's own `table_route` asks the producer to hash the
key, which fails (500) until the producer has metadata for the changelog topic, i.e. until the
first table write after a start; and two workers with different views of a rebalance could pass
a request back and forth. Here a forwarded request carries `ROUTED_HEADER` and is never forwarded
again: its receiver answers if it owns the partition, else 503.

The worker asked answers its own part in-process and calls `/internal/...` on the others with
the partitions it expects them to own. A worker answers only for partitions it owns actively at
that moment; a partition nobody answered for (a rebalance in between) makes the whole query fail
with 503 rather than return a list with holes.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Optional

import aiohttp
import faust
from yarl import URL

PEER_TIMEOUT_S = 10.0
ROUTED_HEADER = "X-Stockstream-Routed"


class ShardUnavailable(Exception):
    """A list query cannot be answered completely right now (the reason says why)."""


def owners(app: faust.App, table: faust.Table) -> dict[str, list[int]]:
    """Worker URL -> the table partitions it owns actively, as of the last rebalance."""
    topic = table.changelog_topic.get_topic_name()
    return {
        str(url): sorted(partitions[topic])
        for url, partitions in app.router.table_metadata(table.name).items()
        if partitions.get(topic)
    }


def local_partitions(app: faust.App, table: faust.Table) -> set[int]:
    """Table partitions this worker owns actively now."""
    topic = table.changelog_topic.get_topic_name()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def same_worker(a: str, b: str) -> bool:
    ua, ub = URL(a), URL(b)
    return (ua.host, ua.port) == (ub.host, ub.port)


def owner_of(app: faust.App, table: faust.Table, partition: int) -> Optional[str]:
    for url, partitions in owners(app, table).items():
        if partition in partitions:
            return url
    return None


async def forward(app: faust.App, owner: str, request) -> tuple[int, str, bytes]:
    """The same GET (path and query as received) on `owner`: (status, content type, body)."""
    target = URL(owner.rstrip("/") + str(request.rel_url), encoded=True)
    try:
        async with app.http_client.get(
            target, headers={ROUTED_HEADER: "1"}, timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)
        ) as response:
            return response.status, response.headers.get("Content-Type", "application/json"), await response.read()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ShardUnavailable(f"worker {owner} did not answer: {exc!r}") from exc


async def gather(
    app: faust.App,
    table: faust.Table,
    path: str,
    params: dict[str, str],
    local: Callable[[list[int]], Awaitable[dict]],
    total_partitions: int,
) -> list[dict]:
    """Every owner's answer for its partitions: `local(partitions)` for this worker, GET
    `path?params&partitions=...` for the others. Raises ShardUnavailable unless together they
    cover all `total_partitions` exactly once."""
    shards = owners(app, table)
    if not shards:
        raise ShardUnavailable("no partition assignment yet")
    me = str(app.conf.canonical_url)

    async def ask(url: str, partitions: list[int]) -> dict:
        if same_worker(url, me):
            return await local(partitions)
        query = {**params, "partitions": ",".join(map(str, partitions))}
        target = URL(url).with_path(path).with_query(query)
        try:
            async with app.http_client.get(target, timeout=aiohttp.ClientTimeout(total=PEER_TIMEOUT_S)) as response:
                if response.status != 200:
                    raise ShardUnavailable(f"worker {url} answered {response.status}: {(await response.text())[:200]}")
                return await response.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ShardUnavailable(f"worker {url} did not answer: {exc!r}") from exc

    answers = await asyncio.gather(*(ask(url, partitions) for url, partitions in sorted(shards.items())))
    answered = sorted(p for answer in answers for p in answer["partitions"])
    if answered != list(range(total_partitions)):
        missing = sorted(set(range(total_partitions)) - set(answered))
        raise ShardUnavailable(f"partitions {missing} not answered (rebalance in progress?)")
    return answers
