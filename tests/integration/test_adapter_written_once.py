"""Written once: an adapter process killed with SIGKILL between receiving a delivery and
acknowledging it gets the delivery again after its restart, and raw.<platform> holds each message
id exactly once (the restarted process reads the recent ids back from the topic). The platform
simulators run in the test process; a `Gate` holds the acknowledgement (or the follow-up fetch)
while the adapter is killed."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from connectors import douyin, jd, pdd, tmall
from connectors.simulators.douyin_api import DouyinSim
from connectors.simulators.jd_api import JdSim
from connectors.simulators.pdd_api import PddSim
from connectors.simulators.tmall_api import TmallSim
from stockstream.core.model import LineStatus
from tests.support.adapters import (
    AdapterProcess,
    Gate,
    assert_no_pii,
    credentials,
    drive_orders,
    ensure_raw_topics,
    message_ids,
    read_raw,
    sim_shops,
    wait_until,
)

pytestmark = pytest.mark.integration
S = LineStatus


async def crash_and_restart(make_process, gate: Gate, sim, what: str) -> AdapterProcess:
    """Start an adapter process, kill -9 it once the gate holds a request, release the gate,
    start a fresh process and wait until the simulator has nothing unacknowledged."""
    first = make_process().start()
    try:
        await asyncio.wait_for(gate.arrived.wait(), 40)
    except asyncio.TimeoutError:
        raise AssertionError(f"the gate was never reached ({what}):\n{first.log_tail()}") from None
    first.kill()
    gate.release()
    second = make_process().start()
    try:
        await wait_until(lambda: sim.pending() == 0, 40, what=lambda: f"{what}: {sim.stat_values()}\n{second.log_tail()}")
    except BaseException:
        second.kill()
        raise
    return second


def exactly_once(records, kind: str, expected: set[str]) -> None:
    counts = Counter(message_ids(records, kind))
    assert set(counts) == expected, f"missing {expected - set(counts)}, unexpected {set(counts) - expected}"
    assert {i: n for i, n in counts.items() if n > 1} == {}, "written more than once"


async def test_tmall_killed_before_confirm_writes_each_message_once(settings, free_port, tmp_path):
    ensure_raw_topics(settings)
    shops = sim_shops("tmall", 1)
    sim = TmallSim(shops, visibility_timeout_s=1.0, bare_rate=0.5, seed=31)
    gate = Gate(lambda path, p: p.get("method") == "taobao.tmc.messages.confirm").install(sim)
    url = await sim.start()
    creds = credentials("tmall", shops, url)
    metrics_port = free_port()
    make = lambda: AdapterProcess(settings, "tmall", creds, tmp_path / "tmall.log", metrics_port,  # noqa: E731
                                  options=["idle_wait_s=0.1", "batch_size=200"])
    try:
        await drive_orders(sim, 6, [(S.CREATED, S.PAID)])
        second = await crash_and_restart(make, gate, sim, "TMC messages confirmed after the restart")
        n_events = len(sim.events)
        assert second.metric("stockstream_adapter_duplicates_total", platform="tmall") >= n_events
        assert second.metric("stockstream_adapter_events_total", platform="tmall", outcome="written") == 0
        second.stop()
    finally:
        await sim.stop()

    records = await read_raw(settings, "tmall")
    exactly_once(records, tmall.KIND_TMC, {e.event_id for e in sim.events})
    bare = {r.key for r in records if r.headers["kind"] == tmall.KIND_TMC and b'\\"num\\"' not in r.value}
    assert bare <= {r.key for r in records if r.headers["kind"] == tmall.KIND_FULLINFO}
    assert_no_pii(records)


async def test_douyin_killed_before_answering_writes_each_push_once(settings, free_port, tmp_path):
    ensure_raw_topics(settings)
    shops = sim_shops("douyin", 1)
    sim = DouyinSim(shops, push_batch=10, retry_interval_s=0.2, push_timeout_s=1.0, seed=32)
    # The first order's detail is fetched and written; the second one's fetch is held: the pushes
    # are in Kafka, one detail is, the others are not, and nothing was answered.
    gate = Gate(lambda path, p: path == "/order/orderDetail", let_through=1).install(sim)
    api = await sim.start()
    creds = credentials("douyin", shops, api)
    port, metrics_port = free_port(), free_port()
    sim.set_callback(f"http://127.0.0.1:{port}/douyin/push")
    make = lambda: AdapterProcess(settings, "douyin", creds, tmp_path / "douyin.log", metrics_port, adapter_port=port)  # noqa: E731
    try:
        await drive_orders(sim, 4, [(S.CREATED,)])
        second = await crash_and_restart(make, gate, sim, "pushes answered after the restart")
        assert second.metric("stockstream_adapter_duplicates_total", platform="douyin") >= len(sim.events)
        second.stop()
    finally:
        await sim.stop()

    records = await read_raw(settings, "douyin")
    exactly_once(records, douyin.KIND_PUSH, {e.event_id for e in sim.events})
    details = Counter(r.key for r in records if r.headers["kind"] == douyin.KIND_DETAIL)
    assert set(details) == set(sim.orders), "the details the crash cut off were fetched after the restart"
    assert sum(details.values()) == len(sim.orders), "the detail written before the crash was not fetched again"
    assert_no_pii(records)


async def test_pdd_killed_before_ack_writes_each_frame_once(settings, free_port, tmp_path):
    ensure_raw_topics(settings)
    shops = sim_shops("pdd", 1)
    sim = PddSim(shops, ack_timeout_s=30, seed=33)  # redelivery comes from the dead connection
    gate = Gate(lambda path, p: p.get("type") == "pdd.order.information.get", let_through=1).install(sim)
    url = await sim.start()
    creds = credentials("pdd", shops, url)
    metrics_port = free_port()
    make = lambda: AdapterProcess(settings, "pdd", creds, tmp_path / "pdd.log", metrics_port, options=["heartbeat_s=0.5"])  # noqa: E731
    try:
        await drive_orders(sim, 4, [(S.PAID,)])
        second = await crash_and_restart(make, gate, sim, "frames acked after the restart")
        assert second.metric("stockstream_adapter_duplicates_total", platform="pdd") >= 1
        second.stop()
    finally:
        await sim.stop()

    records = await read_raw(settings, "pdd")
    exactly_once(records, pdd.KIND_FRAME, {e.event_id for e in sim.events})
    assert {r.key for r in records if r.headers["kind"] == pdd.KIND_ORDER} == set(sim.orders)
    assert_no_pii(records)


async def test_jd_restart_rereads_its_overlap_without_writing_it_again(settings, free_port, tmp_path):
    ensure_raw_topics(settings)
    shops = sim_shops("jd", 1)
    sim = JdSim(shops, seed=34)
    url = await sim.start()
    creds = credentials("jd", shops, url)
    metrics_port = free_port()
    options = ["overlap_s=60", "lag_s=0", "poll_interval_s=0.3", "initial_lookback_s=120"]
    make = lambda: AdapterProcess(settings, "jd", creds, tmp_path / "jd.log", metrics_port, options=options)  # noqa: E731
    try:
        await drive_orders(sim, 5, [(S.PAID, S.SHIPPED)])
        finals = {f"{oid}:{jd.search_order(o)['modified']}:{jd.order_state(o)}" for oid, o in sim.orders.items()}
        first = make().start()

        async def all_written() -> bool:
            return finals <= set(message_ids(await read_raw(settings, "jd")))

        await wait_until(all_written, 40, interval=0.5, what=lambda: first.log_tail())
        first.kill()  # its cursor is saved; the next process re-reads the 60 s overlap
        second = make().start()
        await wait_until(
            lambda: second.metric("stockstream_adapter_duplicates_total", platform="jd") >= len(finals), 40,
            interval=0.5, what=lambda: second.log_tail(),
        )
        second.stop()
    finally:
        await sim.stop()

    counts = Counter(message_ids(await read_raw(settings, "jd")))
    assert finals <= set(counts)
    assert {i: n for i, n in counts.items() if n > 1} == {}, "an order version written twice"
