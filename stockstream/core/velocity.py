"""Sell-through velocity: an exponentially decayed sales rate per channel.

`DecayedRate` keeps one number, the *level*: every unit sold counts ``2 ** -(age / half_life)``,
summed, as of the time of the newest observation. For a steady flow of r units per ms the level
settles at ``r * half_life / ln 2``, so ``rate = level * ln 2 / half_life`` estimates r without
keeping any history. A sale weighs half after one half-life; the mean age of what the estimate
reflects is ``half_life / ln 2`` (a half-life of 2 days behaves like a ~2.9-day window, see
`half_life_for_window`).

Observations may arrive out of time order: one older than the level's time is decayed to it
before being added, which gives the same level as in-order arrival (up to float rounding).

A fresh rate starts at 0 and is biased low until about one half-life of history has passed
(a first sale reads as ``ln 2 / half_life`` units per ms): new channels need a floor in
velocity allocation, not an inflated estimate.

Pure: no clock, no I/O. `observe` mutates; copy with ``DecayedRate.from_list(r.to_list())``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

from stockstream.core.stock import DAY_MS

LN2 = math.log(2.0)


def half_life_for_window(window_ms: int) -> int:
    """The half-life whose decayed rate weighs sales with a mean age of `window_ms`."""
    return max(1, round(window_ms * LN2))


@dataclass(slots=True)
class DecayedRate:
    half_life_ms: int
    level: float = 0.0  # decayed units as of `at_ms`
    at_ms: Optional[int] = None  # time of the newest observation; None: nothing observed

    def __post_init__(self) -> None:
        if self.half_life_ms <= 0:
            raise ValueError(f"half-life must be positive, got {self.half_life_ms}")

    def observe(self, units: float, at_ms: int) -> None:
        if units <= 0:
            return  # cancellations do not un-sell: the level only decays
        at = self.at_ms
        if at is None:
            self.level, self.at_ms = float(units), at_ms
        elif at_ms >= at:
            self.level = self.level * 0.5 ** ((at_ms - at) / self.half_life_ms) + units
            self.at_ms = at_ms
        else:
            self.level += units * 0.5 ** ((at - at_ms) / self.half_life_ms)

    def level_at(self, at_ms: int) -> float:
        """Decayed units as of `at_ms` (not extrapolated backwards before the newest observation)."""
        at = self.at_ms
        if at is None or at_ms <= at:
            return self.level
        return self.level * 0.5 ** ((at_ms - at) / self.half_life_ms)

    def rate(self, at_ms: int) -> float:
        """Estimated units per day at `at_ms`."""
        return self.level_at(at_ms) * (LN2 * DAY_MS / self.half_life_ms)

    def with_half_life(self, half_life_ms: int) -> "DecayedRate":
        """The same current rate under another half-life (a rule change keeps the estimate)."""
        if half_life_ms == self.half_life_ms:
            return self
        return DecayedRate(half_life_ms, self.level * half_life_ms / self.half_life_ms, self.at_ms)

    def to_list(self) -> list:
        return [self.half_life_ms, self.level, self.at_ms]

    @classmethod
    def from_list(cls, data: Sequence) -> "DecayedRate":
        return cls(data[0], float(data[1]), data[2])
