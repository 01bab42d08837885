"""The allocation-commands agent's decisions (format: stockstream/rules_topic.py): when a command
may run, and which stored SKUs it re-allocates. The agent itself is in streams/app.py.

A command is published right after its rule record, but the worker's rules feed reads the rules
topic on its own thread: the command waits until the feed has seen the rule version it names, so
the re-allocation uses the new rule rather than the old one. It waits at most `RULE_WAIT_S`: a
command naming a version that never comes (a hand-written command, a rule record lost) then runs
under the rules the feed has, which is harmless, instead of holding up the partition's commands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Iterable, Optional

from stockstream.rules_topic import ReallocateCommand
from streams.partitioning import partition_for
from streams.rules_feed import RulesBook

log = logging.getLogger(__name__)

RULE_WAIT_S = 30.0


async def wait_for_rule(rules: Optional[RulesBook], command: ReallocateCommand, timeout: float = RULE_WAIT_S) -> bool:
    """True once `rules` has seen the command's rule version (at once without a feed)."""
    if rules is None:
        return True
    deadline = time.monotonic() + timeout
    while not rules.has_seen(command.rules_key, command.rule_version):
        if time.monotonic() > deadline:
            log.warning("allocation command %s: rules v%d of %r not seen after %.0fs, re-allocating under the rules at hand",
                        command, command.rule_version, command.rules_key, timeout)
            return False
        await asyncio.sleep(0.05)
    return True


def keys_to_reallocate(command: ReallocateCommand, stored_keys: Iterable[bytes], partition: int, partitions: int) -> list[bytes]:
    """The SKU of a SKU command; for an all-SKU command every stored key of `partition` (the
    command went to every partition: each re-allocates its own SKUs, and the store may hold other
    partitions' keys too)."""
    if command.sku is not None:
        return [command.sku.encode()]
    return [key for key in stored_keys if partition_for(key, partitions) == partition]
