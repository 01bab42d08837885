"""The producer-buffer fix: a flush (what Faust awaits before committing offsets) returns only
once every record put into the buffer is acknowledged, and raises if one failed."""

from __future__ import annotations

import asyncio

import pytest
from faust.transport.producer import ProducerBuffer

from streams import faust_patches
from streams.faust_patches import track, wait_acknowledged


def test_waits_for_every_pending_future():
    async def scenario():
        pending, failed = set(), []
        futures = [asyncio.get_running_loop().create_future() for _ in range(3)]
        for fut in futures:
            track(pending, failed, fut)

        async def acknowledge_later():
            for fut in futures:
                await asyncio.sleep(0.05)
                fut.set_result(None)

        acker = asyncio.create_task(acknowledge_later())
        await wait_acknowledged(pending, failed, poll_s=0.01)
        assert all(f.done() for f in futures)
        await asyncio.sleep(0)  # done callbacks run on the next loop turn
        assert not pending
        await acker

    asyncio.run(scenario())


def test_a_flush_does_not_wait_for_futures_added_after_it_began():
    async def scenario():
        loop = asyncio.get_running_loop()
        pending, failed = set(), []
        first = loop.create_future()
        track(pending, failed, first)

        async def keep_adding():
            for _ in range(50):
                track(pending, failed, loop.create_future())  # never acknowledged during the flush
                await asyncio.sleep(0.005)

        flush = asyncio.create_task(wait_acknowledged(pending, failed, poll_s=0.01))
        await asyncio.sleep(0)  # the flush has begun: it waits for `first` only
        adder = asyncio.create_task(keep_adding())
        loop.call_later(0.02, first.set_result, None)
        await asyncio.wait_for(flush, timeout=2)
        adder.cancel()

    asyncio.run(scenario())


def test_a_failed_send_makes_the_flush_raise():
    async def scenario():
        pending, failed = set(), []
        fut = asyncio.get_running_loop().create_future()
        track(pending, failed, fut)
        fut.set_exception(ConnectionError("broker gone"))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="not acknowledged"):
            await wait_acknowledged(pending, failed)

    asyncio.run(scenario())


def test_install_replaces_put_and_flush_once():
    faust_patches.install()
    put, flush = ProducerBuffer.put, ProducerBuffer.flush
    faust_patches.install()
    assert (ProducerBuffer.put, ProducerBuffer.flush) == (put, flush)
    assert put.__module__ == "streams.faust_patches"


def test_a_flush_also_awaits_the_producers_registered_with_it():
    from types import SimpleNamespace

    faust_patches.install()
    flushed = []

    async def also_flush():
        flushed.append("outputs")

    async def scenario():
        buffer = ProducerBuffer()
        buffer.app = SimpleNamespace(conf=SimpleNamespace(producer_threaded=False))
        faust_patches.flush_with(SimpleNamespace(producer=SimpleNamespace(buffer=buffer)), also_flush)
        await buffer.flush()

    asyncio.run(scenario())
    assert flushed == ["outputs"]
