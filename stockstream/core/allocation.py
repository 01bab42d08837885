"""ATS of one master SKU -> the quantity to publish on each channel, never overselling.

Modes (`AllocationMode`), each computing a *share* per channel from the stock pool
``max(ATS, 0)``:

* shared: every channel sees ``floor(pool x percentage)``; channels compete for the same units
  (the marketplaces' own reservation settles who gets them).
* split: exclusive shares. Reserves come off the top first (`ChannelRule.reserve`, e.g. the units
  held for the brand's own store), served in the order the rules list the channels, each capped
  by what is left. The rest is split by weight with largest-remainder rounding: everyone gets
  ``floor(rest x w / W)``, the leftover units go one each to the largest remainders, equal
  remainders to the smaller channel name. With some positive weight the whole pool is handed out.
* velocity: like split, but the rest follows each channel's recent sell-through (a
  `DecayedRate` per channel, see `velocity.py`) with a per-channel minimum share
  (`ChannelRule.floor`: below 1 a fraction of the rest, from 1 up units). Shares are
  ``max(floor, lambda x rate)`` with lambda such that they sum to the rest (water-filling); if the
  floors alone exceed the rest, the rest is split in proportion to the floors. While no channel has
  sold anything (all rates 0) the weights stand in for the rates.

Then, in every mode, each channel's share becomes its target: minus `buffer`, capped at
`max_quantity`, 0 below `min_to_list`, never negative. These only lower a share, so the
invariants hold: split and velocity publish at most ``max(ATS, 0)`` in total, shared publishes at
most ``max(ATS - buffer, 0)`` per channel. Units cut by buffers and caps are not redistributed.

Presale: `stock.ats` lets ATS go down to ``-presale_allowance``. The allowance not yet used,
``max(ATS + allowance, 0) - max(ATS, 0)`` (the whole allowance while ATS >= 0), is a second pool
that only channels with ``presale=True`` draw from, on top of their stock share: in shared mode a
presale channel sees ``floor(max(ATS + allowance, 0) x percentage)``; in split mode the presale
pool is split by weight among the presale channels (reserves and floors apply to stock only); in
velocity mode by their rates. Channels without presale get 0 whenever ATS <= 0. With presale the
bounds become: non-presale channels together (split, velocity) or each (shared, minus buffer) at
most ``max(ATS, 0)``; all channels together (split, velocity) or a presale channel alone (shared)
at most ``max(ATS + allowance, 0)`` - exactly the overselling the allowance permits.

Publishing (`allocate`): `AllocationState` keeps, per channel, the quantity last published and its
version. A change is emitted only for a channel whose quantity changes, with version + 1; the
first allocation of a channel always emits (version 1), also when it is 0, so that the listing
states our number rather than whatever it showed before. Channels that drop out of the rules are
published 0 (delisted) and kept in the state so that their versions keep increasing.

Hysteresis (`hysteresis_units`, `hysteresis_fraction` of the published quantity; the larger
applies): a channel keeps its published quantity while the target is within the tolerance, in
either direction, so that shares do not flap with every order. Never held: listing (published 0)
and delisting (target 0), the first allocation under a new rule version (an operator's change
takes effect at once), and anything that would oversell: if the held quantities exceed a bound
above (a sum in split / velocity, a channel in shared mode) every held decrease is published at
once. Held increases stay below their targets, so the bounds hold after that.

Sales (`sales_by_channel`) feed the channels' rates in every mode, so that signals have them and
a switch to velocity mode starts from history.

Re-publishing (`republish`): a marketplace moves a listing's stock itself when an order takes or
gives back units (a sale decrements it, a cancellation increments it). A channel whose own orders
moved stock is therefore published again (version + 1) even when its target equals what we last
published: otherwise the listing would show the published quantity minus the sale (stranded
units) or plus the cancellation (overselling) until the next change or reconciliation.

Replays: ATS snapshots are versioned. An input whose (ats_version, rule_version) is not above
the state's (lexicographically: a newer ATS always applies, the same ATS again only with newer
rules) changes nothing and emits nothing, also not its sales: idempotent under at-least-once
delivery.

Pure: no clock, no I/O. `allocate` mutates the state it is given and returns it; copy first
(``AllocationState.from_dict(s.to_dict())``) to keep the old value.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from fractions import Fraction
from functools import lru_cache
from typing import Iterable, Mapping, Optional, Sequence

from stockstream.core.stock import DAY_MS
from stockstream.core.velocity import DecayedRate

DEFAULT_HALF_LIFE_MS = 3 * DAY_MS

# Float weights (velocity rates, fractional rule weights) become integers of this resolution
# relative to the largest, so that largest-remainder rounding is exact integer arithmetic.
_WEIGHT_SCALE = 1 << 40


class AllocationMode(str, Enum):
    SHARED = "shared"
    SPLIT = "split"
    VELOCITY = "velocity"


# --- rules --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChannelRule:
    channel: str  # "<platform>:<shop_id>"
    weight: float = 1  # split (and velocity before any sale): relative share
    percentage: float = 1.0  # shared: the part of the pool this channel sees, 0..1
    buffer: int = 0  # units kept off this channel's share
    max_quantity: Optional[int] = None
    min_to_list: int = 0  # a target below this is published as 0
    reserve: int = 0  # split / velocity: units off the top for this channel
    floor: float = 0  # velocity: minimum share; < 1 a fraction of the rest, else units
    presale: bool = False  # may list the unused presale allowance

    def __post_init__(self) -> None:
        problem = None
        if not self.channel:
            problem = "channel is empty"
        elif not (math.isfinite(self.weight) and math.isfinite(self.floor)):
            problem = "weight and floor must be finite"
        elif self.weight < 0:
            problem = "weight is negative"
        elif not 0 <= self.percentage <= 1:
            problem = "percentage is outside 0..1"
        elif self.buffer < 0 or self.min_to_list < 0 or self.reserve < 0:
            problem = "buffer, min_to_list and reserve must not be negative"
        elif self.max_quantity is not None and self.max_quantity < 0:
            problem = "max_quantity is negative"
        elif self.floor < 0 or (self.floor >= 1 and self.floor != int(self.floor)):
            problem = "floor must be a fraction below 1 or whole units"
        if problem:
            raise ValueError(f"channel rule {self.channel!r}: {problem}")

    def floor_units(self, rest: int) -> int:
        f = self.floor
        if f >= 1:
            return int(f)
        if not f:
            return 0
        num, den = _decimal_ratio(f)
        return rest * num // den

    def to_dict(self) -> dict:
        data: dict = {"channel": self.channel}
        for name, default in _CHANNEL_DEFAULTS.items():
            value = getattr(self, name)
            if value != default or type(value) is not type(default):
                data[name] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping, base: Optional["ChannelRule"] = None) -> "ChannelRule":
        """`data` over `base` (a default rule of the same channel): keys it omits inherit."""
        unknown = set(data) - _CHANNEL_FIELDS
        if unknown:
            raise ValueError(f"channel rule {data.get('channel')!r}: unknown keys {sorted(unknown)}")
        if base is None:
            return cls(**data)
        return replace(base, **data)


_CHANNEL_FIELDS = {f.name for f in fields(ChannelRule)}
_CHANNEL_DEFAULTS = {f.name: f.default for f in fields(ChannelRule) if f.name != "channel"}


@dataclass(frozen=True, slots=True)
class AllocationRules:
    version: int
    mode: AllocationMode = AllocationMode.SHARED
    channels: tuple[ChannelRule, ...] = ()  # order matters: it is the order reserves are served in
    hysteresis_units: int = 0
    hysteresis_fraction: float = 0.0
    velocity_half_life_ms: int = DEFAULT_HALF_LIFE_MS

    def __post_init__(self) -> None:
        object.__setattr__(self, "mode", AllocationMode(self.mode))
        object.__setattr__(self, "channels", tuple(self.channels))
        names = [rule.channel for rule in self.channels]
        if len(set(names)) != len(names):
            raise ValueError(f"allocation rules v{self.version}: a channel is listed twice in {names}")
        if self.hysteresis_units < 0 or not 0 <= self.hysteresis_fraction < math.inf:
            raise ValueError(f"allocation rules v{self.version}: hysteresis must not be negative")
        if self.velocity_half_life_ms <= 0:
            raise ValueError(f"allocation rules v{self.version}: velocity half-life must be positive")

    def channel(self, name: str) -> Optional[ChannelRule]:
        for rule in self.channels:
            if rule.channel == name:
                return rule
        return None

    def to_dict(self) -> dict:
        data: dict = {"version": self.version, "mode": self.mode.value, "channels": [rule.to_dict() for rule in self.channels]}
        if self.hysteresis_units:
            data["hysteresis_units"] = self.hysteresis_units
        if self.hysteresis_fraction:
            data["hysteresis_fraction"] = self.hysteresis_fraction
        if self.velocity_half_life_ms != DEFAULT_HALF_LIFE_MS:
            data["velocity_half_life_ms"] = self.velocity_half_life_ms
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "AllocationRules":
        return merge_rules(None, data)


_RULE_KEYS = {f.name for f in fields(AllocationRules)}


def merge_rules(defaults: Optional[AllocationRules], overrides: Optional[Mapping]) -> AllocationRules:
    """Per-SKU rules (`overrides`, in `to_dict` form, any key may be left out) over the defaults
    for all SKUs.

    Keys the overrides omit inherit the default. Channel rules merge by channel, field by field:
    ``{"channel": "jd:1", "reserve": 5}`` changes only the reserve of jd:1's default rule; a channel
    without a default rule starts from `ChannelRule`'s defaults and is listed after the defaulted
    ones. (To keep a SKU off a channel: ``"max_quantity": 0``.) The version is the sum of both
    versions: it increases whenever either does, so replays and hysteresis see every change."""
    if defaults is None:
        defaults = AllocationRules(version=0)
    if not overrides:
        return defaults
    unknown = set(overrides) - _RULE_KEYS
    if unknown:
        raise ValueError(f"allocation rules: unknown keys {sorted(unknown)}")
    channels = {rule.channel: rule for rule in defaults.channels}
    for data in overrides.get("channels", ()):
        name = data["channel"]
        channels[name] = ChannelRule.from_dict(data, channels.get(name))
    return AllocationRules(
        version=defaults.version + overrides.get("version", 0),
        mode=overrides.get("mode", defaults.mode),
        channels=tuple(channels.values()),
        hysteresis_units=overrides.get("hysteresis_units", defaults.hysteresis_units),
        hysteresis_fraction=overrides.get("hysteresis_fraction", defaults.hysteresis_fraction),
        velocity_half_life_ms=overrides.get("velocity_half_life_ms", defaults.velocity_half_life_ms),
    )


# --- arithmetic ---------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _decimal_ratio(x: float) -> tuple[int, int]:
    """`x` as the decimal it was written as: 0.29 is 29/100, so floor(100 x 0.29) is 29, not 28."""
    ratio = Fraction(repr(x)) if isinstance(x, float) else Fraction(x)
    return ratio.numerator, ratio.denominator


def _integer_weights(weights: Sequence[float]) -> Sequence[int]:
    if all(type(w) is int for w in weights):
        return weights  # type: ignore[return-value]
    top = max(weights, default=0)
    if top <= 0:
        return [0] * len(weights)
    return [int(w / top * _WEIGHT_SCALE) if w > 0 else 0 for w in weights]


def largest_remainder(total: int, names: Sequence[str], weights: Sequence[int]) -> list[int]:
    """`total` units in proportion to integer `weights`: floors of the exact quotas, then one unit
    each to the largest remainders, ties to the smaller name. Sums to `total` when some weight is
    positive (else all 0); a weight of 0 gets 0."""
    n = len(weights)
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * n
    shares = [0] * n
    remainders = [0] * n
    handed = 0
    for i, w in enumerate(weights):
        shares[i], remainders[i] = divmod(total * w, weight_sum)
        handed += shares[i]
    left = total - handed  # < n, and fewer than the positive remainders
    if left:
        for i in heapq.nsmallest(left, range(n), key=lambda i: (-remainders[i], names[i])):
            shares[i] += 1
    return shares


def _velocity_split(total: int, names: Sequence[str], rates: Sequence[float], floors: Sequence[int]) -> list[int]:
    """``max(floor, lambda x rate)`` summing to `total`, rounded by largest remainder on the part
    above the floors (so no channel ends below its floor)."""
    n = len(rates)
    if total <= 0:
        return [0] * n
    floor_sum = sum(floors)
    if floor_sum >= total:
        return largest_remainder(total, names, floors)
    # Raise lambda from 0: a channel leaves its floor at lambda = floor / rate. Walk those points
    # in order until the channels at their floor plus lambda x the released rates reach `total`.
    at_floor, released_rate = floor_sum, 0.0
    for i in sorted((i for i in range(n) if rates[i] > 0), key=lambda i: (floors[i] / rates[i], names[i])):
        if released_rate > 0 and at_floor + floors[i] / rates[i] * released_rate >= total:
            break
        at_floor -= floors[i]
        released_rate += rates[i]
    if released_rate <= 0:
        return list(floors)  # nobody sells and nobody has weight: only the floors are listed
    lam = (total - at_floor) / released_rate
    above = [max(0.0, lam * rates[i] - floors[i]) if rates[i] > 0 else 0.0 for i in range(n)]
    extra = largest_remainder(total - floor_sum, names, _integer_weights(above))
    return [floors[i] + extra[i] for i in range(n)]


def _finish(share: int, rule: ChannelRule) -> int:
    q = share - rule.buffer
    if rule.max_quantity is not None and q > rule.max_quantity:
        q = rule.max_quantity
    return q if q >= rule.min_to_list and q > 0 else 0


def _pools(ats: int, presale_allowance: int) -> tuple[int, int]:
    """(stock pool, stock + presale pool): max(ATS, 0) and max(ATS + allowance, 0)."""
    stock = ats if ats > 0 else 0
    with_presale = ats + presale_allowance
    return stock, with_presale if with_presale > stock else stock


# --- targets ------------------------------------------------------------------------------------


def allocation_targets(
    ats: int,
    rules: AllocationRules,
    *,
    daily_rates: Optional[Mapping[str, float]] = None,
    presale_allowance: int = 0,
) -> dict[str, int]:
    """The quantity each channel of the rules should show (no hysteresis), in rule order.
    `daily_rates`: velocity mode's sell-through per channel (missing: 0)."""
    if presale_allowance < 0:
        raise ValueError(f"presale allowance must not be negative, got {presale_allowance}")
    stock, with_presale = _pools(ats, presale_allowance)
    channels = rules.channels
    if rules.mode is AllocationMode.SHARED:
        out = {}
        for rule in channels:
            num, den = _decimal_ratio(rule.percentage)
            out[rule.channel] = _finish((with_presale if rule.presale else stock) * num // den, rule)
        return out

    n = len(channels)
    names = [rule.channel for rule in channels]
    shares = [0] * n
    rest = stock
    for i, rule in enumerate(channels):
        if rule.reserve and rest:
            taken = rule.reserve if rule.reserve < rest else rest
            shares[i] = taken
            rest -= taken
    weights = _integer_weights([rule.weight for rule in channels])
    presale_pool = with_presale - stock
    if rules.mode is AllocationMode.SPLIT:
        split = largest_remainder(rest, names, weights)
        presale_weights = [w if rule.presale else 0 for w, rule in zip(weights, channels)]
    else:
        rates = [0.0] * n
        if daily_rates:
            rates = [float(daily_rates.get(name, 0.0)) for name in names]
        if not any(r > 0 for r in rates):
            rates = [float(w) for w in weights]  # nothing sold yet: the weights stand in
        split = _velocity_split(rest, names, rates, [rule.floor_units(rest) for rule in channels])
        presale_weights = _integer_weights([r if rule.presale else 0.0 for r, rule in zip(rates, channels)])
    presale_split = largest_remainder(presale_pool, names, presale_weights) if presale_pool else None
    out = {}
    for i, rule in enumerate(channels):
        share = shares[i] + split[i]
        if presale_split is not None:
            share += presale_split[i]
        out[rule.channel] = _finish(share, rule)
    return out


def bundle_allocation(component_allocations: Mapping[str, Mapping[str, int]], components: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Per channel, how many bundles the components' allocations allow: min over components of
    floor(component quantity / units per bundle). A channel missing from some component's
    allocation gets 0 there; no components: {}. On one channel the bundle listing and the
    components' own listings draw on the same units (like shared mode)."""
    components = list(components)
    for sku, units in components:
        if units <= 0:
            raise ValueError(f"bundle component {sku!r}: units must be positive, got {units}")
    channels: set[str] = set()
    for sku, _ in components:
        channels.update(component_allocations.get(sku, ()))
    out = {}
    for channel in sorted(channels):
        out[channel] = min(max(component_allocations.get(sku, {}).get(channel, 0), 0) // units for sku, units in components)
    return out


# --- state and publishing -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllocationChangeIntent:
    """A new quantity to publish on one channel (the fields of stockstream.AllocationChange but
    movement_ids, which the stream knows)."""

    sku: str
    channel: str
    quantity: int
    previous_quantity: int  # 0 for a channel's first publication
    version: int  # per SKU and channel: the previous + 1
    ats: int
    ats_version: int
    rule_version: int
    mode: str
    computed_at_ms: int


@dataclass(slots=True)
class AllocationState:
    sku: str
    quantities: dict[str, int] = field(default_factory=dict)  # channel -> published quantity
    versions: dict[str, int] = field(default_factory=dict)  # channel -> version of that publication
    rates: dict[str, DecayedRate] = field(default_factory=dict)  # channel -> sell-through
    ats: int = 0  # the ATS the published quantities were computed from
    ats_version: Optional[int] = None  # None: nothing allocated yet
    rule_version: Optional[int] = None
    presale_allowance: int = 0

    def daily_rates(self, at_ms: int) -> dict[str, float]:
        return {channel: rate.rate(at_ms) for channel, rate in self.rates.items()}

    def to_dict(self) -> dict:
        data: dict = {"k": self.sku}
        if self.quantities:
            data["q"] = self.quantities
            data["n"] = self.versions
        if self.rates:
            data["s"] = {channel: rate.to_list() for channel, rate in self.rates.items()}
        if self.ats_version is not None:
            data["a"] = [self.ats, self.ats_version, self.rule_version, self.presale_allowance]
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "AllocationState":
        state = cls(data["k"], dict(data.get("q", {})), dict(data.get("n", {})))
        state.rates = {channel: DecayedRate.from_list(rate) for channel, rate in data.get("s", {}).items()}
        if "a" in data:
            state.ats, state.ats_version, state.rule_version, state.presale_allowance = data["a"]
        return state


def _is_replay(state: AllocationState, ats_version: int, rule_version: int) -> bool:
    if state.ats_version is None:
        return False
    if ats_version != state.ats_version:
        return ats_version < state.ats_version
    return rule_version <= state.rule_version  # type: ignore[operator]


def _with_hysteresis(
    state: AllocationState,
    targets: dict[str, int],
    rules: AllocationRules,
    ats: int,
    presale_allowance: int,
) -> dict[str, int]:
    """The quantities to publish: targets, except for small moves (see module docstring)."""
    quantities = dict(targets)
    for channel in state.quantities:
        if channel not in quantities:
            quantities[channel] = 0  # left the rules: delist
    units, fraction = rules.hysteresis_units, rules.hysteresis_fraction
    if (not units and not fraction) or state.rule_version != rules.version:
        return quantities
    published = state.quantities
    held = False
    for channel, target in quantities.items():
        current = published.get(channel)
        if not current or not target or current == target:
            continue  # first publication, listing, delisting, or no change
        tolerance = current * fraction
        if units > tolerance:
            tolerance = units
        if abs(target - current) <= tolerance:
            quantities[channel] = current
            held = True
    if not held:
        return quantities
    stock, with_presale = _pools(ats, presale_allowance)
    if rules.mode is AllocationMode.SHARED:
        for rule in rules.channels:
            bound = (with_presale if rule.presale else stock) - rule.buffer
            if quantities[rule.channel] > bound:
                quantities[rule.channel] = targets[rule.channel]
        return quantities
    total = sum(quantities.values())
    presale_total = sum(quantities[rule.channel] for rule in rules.channels if rule.presale)
    if total > with_presale or total - presale_total > stock:
        for channel, target in targets.items():
            if quantities[channel] > target:
                quantities[channel] = target
    return quantities


def _emit(
    state: AllocationState,
    quantities: Mapping[str, int],
    ats: int,
    ats_version: int,
    rule_version: int,
    mode: str,
    now_ms: int,
) -> list[AllocationChangeIntent]:
    published, versions = state.quantities, state.versions
    changes = []
    for channel, quantity in quantities.items():
        previous = published.get(channel)
        if previous == quantity:
            continue
        version = versions.get(channel, 0) + 1
        changes.append(
            AllocationChangeIntent(state.sku, channel, quantity, previous or 0, version, ats, ats_version, rule_version, mode, now_ms)
        )
        published[channel] = quantity
        versions[channel] = version
    return changes


def record_sales(state: AllocationState, sales_by_channel: Mapping[str, int], at_ms: int, half_life_ms: int) -> None:
    """Feed sold units into the channels' rates (`allocate` does this for the sales it is given)."""
    rates = state.rates
    for channel, units in sales_by_channel.items():
        if units > 0:
            rate = rates.get(channel)
            if rate is None:
                rate = rates[channel] = DecayedRate(half_life_ms)
            rate.observe(units, at_ms)


def allocate(
    state: AllocationState,
    ats: int,
    ats_version: int,
    rules: AllocationRules,
    now_ms: int,
    *,
    sales_by_channel: Optional[Mapping[str, int]] = None,
    presale_allowance: int = 0,
    republish: Iterable[str] = (),
) -> tuple[AllocationState, list[AllocationChangeIntent]]:
    """Allocate a new ATS (version `ats_version`) under `rules`; `sales_by_channel`: units sold per
    channel since the last call (the RESERVE movements behind this ATS), counted at `now_ms`.
    `republish`: channels whose own orders moved their listing's stock (see "Re-publishing").
    Returns the state (mutated) and the changes to publish, in rule order then dropped channels,
    then re-publications."""
    if _is_replay(state, ats_version, rules.version):
        return state, []
    half_life = rules.velocity_half_life_ms
    rates = state.rates
    for channel, rate in rates.items():
        if rate.half_life_ms != half_life:
            rates[channel] = rate.with_half_life(half_life)
    if sales_by_channel:
        record_sales(state, sales_by_channel, now_ms, half_life)
    daily_rates = None
    if rules.mode is AllocationMode.VELOCITY and rates:
        daily_rates = {rule.channel: rates[rule.channel].rate(now_ms) for rule in rules.channels if rule.channel in rates}
    targets = allocation_targets(ats, rules, daily_rates=daily_rates, presale_allowance=presale_allowance)
    quantities = _with_hysteresis(state, targets, rules, ats, presale_allowance)
    changes = _emit(state, quantities, ats, ats_version, rules.version, rules.mode.value, now_ms)
    changed = {change.channel for change in changes}
    for channel in sorted(set(republish) - changed):
        published = state.quantities.get(channel)
        if published is None:
            continue  # never published: the platform shows nothing of ours to correct
        version = state.versions.get(channel, 0) + 1
        state.versions[channel] = version
        changes.append(AllocationChangeIntent(
            state.sku, channel, published, published, version, ats, ats_version, rules.version, rules.mode.value, now_ms
        ))
    state.ats, state.ats_version, state.rule_version, state.presale_allowance = ats, ats_version, rules.version, presale_allowance
    return state, changes


def publish(
    state: AllocationState,
    quantities: Mapping[str, int],
    *,
    ats: int,
    ats_version: int,
    rule_version: int,
    mode: str,
    now_ms: int,
) -> tuple[AllocationState, list[AllocationChangeIntent]]:
    """Publish quantities computed elsewhere (a bundle's `bundle_allocation`) with the same
    versioning, replay filter and delisting of channels not given; no hysteresis. For a bundle,
    ``ats_version`` can be the sum of its components' ATS versions (it increases with any)."""
    if _is_replay(state, ats_version, rule_version):
        return state, []
    if any(q < 0 for q in quantities.values()):
        raise ValueError(f"{state.sku}: negative quantity to publish in {dict(quantities)}")
    merged = dict(quantities)
    for channel in state.quantities:
        merged.setdefault(channel, 0)
    changes = _emit(state, merged, ats, ats_version, rule_version, mode, now_ms)
    state.ats, state.ats_version, state.rule_version = ats, ats_version, rule_version
    return state, changes


# --- signals ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReallocationSignal:
    """`short_channel` sells out soon while `donor_channel` holds more than it needs."""

    sku: str
    short_channel: str
    short_quantity: int
    hours_to_sellout: float
    donor_channel: str
    donor_quantity: int
    donor_days_of_cover: float  # inf: the donor sells nothing
    units: int  # suggested move: the donor's surplus over the cover threshold, at most what the short channel needs to reach it


def reallocation_signal(
    sku: str,
    quantities: Mapping[str, int],
    daily_rates: Mapping[str, float],
    *,
    sellout_within_hours: float,
    donor_cover_days: float,
) -> Optional[ReallocationSignal]:
    """A channel sells out within `sellout_within_hours` at its current rate (units per day) while
    another holds more than `donor_cover_days` of cover with at least one whole unit above it.
    Picks the soonest sellout and the donor with the most cover (then most units); ties by name.
    Meant for exclusive modes (split, velocity): in shared mode every channel sees the same units."""
    short: Optional[tuple[float, str]] = None
    for channel in sorted(quantities):
        rate = daily_rates.get(channel, 0.0)
        if rate > 0:
            hours = max(quantities[channel], 0) / rate * 24.0
            if hours <= sellout_within_hours and (short is None or hours < short[0]):
                short = (hours, channel)
    if short is None:
        return None
    hours, short_channel = short
    donor: Optional[tuple[float, int, int, str]] = None
    for channel in sorted(quantities):
        if channel == short_channel:
            continue
        quantity = max(quantities[channel], 0)
        rate = max(daily_rates.get(channel, 0.0), 0.0)
        cover = quantity / rate if rate > 0 else (math.inf if quantity > 0 else 0.0)
        surplus = quantity - math.ceil(donor_cover_days * rate)
        if cover > donor_cover_days and surplus >= 1 and (donor is None or (cover, quantity) > donor[:2]):
            donor = (cover, quantity, surplus, channel)
    if donor is None:
        return None
    cover, donor_quantity, surplus, donor_channel = donor
    short_quantity = max(quantities[short_channel], 0)
    need = math.ceil(donor_cover_days * daily_rates[short_channel]) - short_quantity
    return ReallocationSignal(sku, short_channel, short_quantity, hours, donor_channel, donor_quantity, cover, max(1, min(surplus, need)))


@dataclass(frozen=True, slots=True)
class ReplenishmentSignal:
    sku: str
    ats: int
    daily_rate: float
    days_of_cover: float  # ATS / daily rate; negative when presale oversold
    threshold_days: float  # lead time + safety days
    units: int  # to order now so that cover reaches the threshold


def replenishment_signal(
    sku: str,
    ats: int,
    daily_rate: float,
    *,
    lead_time_days: float,
    safety_days: float,
) -> Optional[ReplenishmentSignal]:
    """Days of cover (ATS / total units sold per day) below lead time + safety days. No demand
    (rate 0): no signal, whatever the stock."""
    if daily_rate <= 0:
        return None
    cover = ats / daily_rate
    threshold = lead_time_days + safety_days
    if cover >= threshold:
        return None
    return ReplenishmentSignal(sku, ats, daily_rate, cover, threshold, max(1, math.ceil(threshold * daily_rate) - ats))
