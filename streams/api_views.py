"""What the REST API answers, as plain functions of stock table values: no Faust, no I/O.

A table value (bytes) is read in ONE place, `read_sku_value`, so a change of the stored format
touches one function. Everything else works on the decoded `SkuValue` (stock + allocation state).

List queries are answered in two steps: every worker answers for the partitions it owns
(`local_ats_answer`, `local_summary_answer`), and the worker asked merges the answers
(`merge_ats_answers`, `merge_summaries`). Merges sort on the SKU (and fixed tie-breakers) and cut
to the limit after merging, so the result does not depend on which worker was asked or on the
order in which the others answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, NamedTuple, Optional

from stockstream.core.allocation import AllocationMode, AllocationRules, allocation_targets
from stockstream.core.stock import ats
from stockstream.core.velocity import DecayedRate
from streams.sku_allocation import SkuValue
from streams.stock import snapshot_record

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
AT_RISK_LIMIT = 20
RECENT_CHANGES_LIMIT = 20


def read_sku_value(value: bytes) -> SkuValue:
    """A stock table value: the stock state, plus the allocation state if allocation ran (older
    values without one read as nothing allocated yet)."""
    return SkuValue.decode(value)


# --- one SKU -------------------------------------------------------------------------------------


def ats_body(value: SkuValue) -> dict:
    """`GET /ats/{sku}`: ATS and every bucket it comes from."""
    body = snapshot_record(value.stock, [], 0)
    del body["movement_ids"], body["updated_at_ms"]
    return body


def list_item(value: SkuValue) -> dict:
    """One SKU of `GET /ats`: its ATS body and the quantity published on each channel."""
    body = ats_body(value)
    body["allocated"] = dict(value.allocation.quantities)
    return body


def allocation_body(value: SkuValue, rules: AllocationRules) -> dict:
    """`GET /allocations/{sku}`. Velocity is each channel's sell-through as of its last sale, so the
    answer is the same whenever (and wherever) it is asked until the SKU changes."""
    allocation = value.allocation
    channels = {}
    for channel in sorted(set(allocation.quantities) | set(allocation.rates)):
        rate = allocation.rates.get(channel)
        channels[channel] = {
            "quantity": allocation.quantities.get(channel),
            "version": allocation.versions.get(channel),
            "units_per_day": None if rate is None or rate.at_ms is None else rate.rate(rate.at_ms),
            "last_sale_at_ms": None if rate is None else rate.at_ms,
        }
    return {
        "sku": value.stock.sku,
        "ats": ats(value.stock),
        "ats_version": value.stock.version,
        "allocated_from": None if allocation.ats_version is None else {
            "ats": allocation.ats, "ats_version": allocation.ats_version, "rule_version": allocation.rule_version,
        },
        "channels": channels,
        "rules": rules.to_dict(),
        "signals": dict(value.signals),
    }


def _last_sale_rates(value: SkuValue) -> dict[str, float]:
    """Per channel units/day as of the SKU's latest sale: what velocity allocation last saw,
    without the decay since (which would make the answer depend on the moment it is asked)."""
    rates = value.allocation.rates
    seen = [rate.at_ms for rate in rates.values() if rate.at_ms is not None]
    if not seen:
        return {}
    at = max(seen)
    return {channel: rate.rate(at) for channel, rate in rates.items()}


def provenance_body(value: SkuValue, channel: str, rules: AllocationRules, last_change: Optional[dict]) -> dict:
    """`GET /provenance/{sku}/{channel}`: why the channel shows what it shows."""
    stock, allocation = value.stock, value.allocation
    current_ats = ats(stock)
    rule = rules.channel(channel)
    rates = _last_sale_rates(value)
    target = None
    if rule is not None:
        target = allocation_targets(
            current_ats, rules, daily_rates=rates, presale_allowance=stock.presale_allowance
        ).get(channel)
    published = allocation.quantities.get(channel)
    body = {
        "sku": stock.sku,
        "channel": channel,
        "published": None if published is None else {"quantity": published, "version": allocation.versions[channel]},
        "ats": ats_body(value),
        "allocated_from": None if allocation.ats_version is None else {
            "ats": allocation.ats, "ats_version": allocation.ats_version, "rule_version": allocation.rule_version,
        },
        "rule": {
            "version": rules.version,
            "mode": rules.mode.value,
            "channel_rule": None if rule is None else rule.to_dict(),
            "channels": [r.channel for r in rules.channels],
        },
        "target": target,
        "units_per_day": rates.get(channel),
        "last_change": last_change,
    }
    body["explanation"] = explain(body, rules)
    return body


def explain(body: dict, rules: AllocationRules) -> str:
    """One paragraph a person reads: "tmall:x shows 37 because ..." from a provenance body."""
    channel, sku = body["channel"], body["sku"]
    a = body["ats"]
    reserved = a["reserved"]
    parts = [f"ATS of {sku} is {a['ats']} = on hand {a['sellable_on_hand']} - reserved {reserved}"
             f" - safety stock {a['safety_stock']}"]
    if a["presale_allowance"]:
        parts[0] += f" (presale allowance {a['presale_allowance']})"
    published = body["published"]
    rule = rules.channel(channel)
    if published is None:
        shows = f"{channel} shows nothing from stockstream yet: no allocation has been published for it."
    else:
        shows = f"{channel} shows {published['quantity']} (version {published['version']})."
    if rule is None:
        how = f"{channel} is not in the rules (v{rules.version}): it is delisted (0)."
    else:
        if rules.mode is AllocationMode.SHARED:
            how = f"Rules v{rules.version}, shared mode: {rule.percentage:.0%} of the stock pool"
        elif rules.mode is AllocationMode.SPLIT:
            total = sum(r.weight for r in rules.channels) or 1
            how = f"Rules v{rules.version}, split mode: weight {rule.weight:g} of {total:g} of the pool after reserves"
        else:
            how = f"Rules v{rules.version}, velocity mode: a share by sell-through ({body['units_per_day'] or 0:.2f} units/day)"
        extras = []
        if rule.reserve:
            extras.append(f"reserve {rule.reserve}")
        if rule.buffer:
            extras.append(f"minus buffer {rule.buffer}")
        if rule.max_quantity is not None:
            extras.append(f"capped at {rule.max_quantity}")
        if rule.min_to_list:
            extras.append(f"0 below {rule.min_to_list}")
        how += (", " + ", ".join(extras) if extras else "") + f": target {body['target']}."
    notes = []
    source = body["allocated_from"]
    if published is not None and body["target"] is not None and published["quantity"] != body["target"]:
        if source is not None and source["rule_version"] != rules.version:
            notes.append(f"Published under rules v{source['rule_version']}; re-allocation under v{rules.version} is pending.")
        else:
            notes.append(f"Held at {published['quantity']} by hysteresis (target {body['target']}).")
    change = body["last_change"]
    if change is not None and change.get("movement_ids"):
        notes.append(f"Last changed by movements {', '.join(change['movement_ids'][:5])}"
                     + (" ..." if len(change["movement_ids"]) > 5 else "") + ".")
    return " ".join([shows, "; ".join(parts) + ".", how, *notes])


# --- list queries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AtsQuery:
    channel: Optional[str] = None  # SKUs reserved or allocated on this channel
    location: Optional[str] = None  # SKUs with stock records at this location
    below: Optional[int] = None  # SKUs whose ATS is below this
    q: Optional[str] = None  # SKUs whose id contains this (case-insensitive)
    limit: int = DEFAULT_LIMIT
    history: bool = False  # add each SKU's recent (time, ATS, units/day) points
    after: Optional[str] = None  # SKUs after this one (the previous page's `next_after`)

    def matches_sku(self, sku: str) -> bool:
        """The part of `matches` a key alone decides: checked before a value is decoded."""
        if self.after is not None and sku <= self.after:
            return False
        return self.q is None or self.q.lower() in sku.lower()

    @property
    def reads_values(self) -> bool:
        """Whether matching needs a SKU's value, or its key alone decides."""
        return self.location is not None or self.channel is not None or self.below is not None

    def matches(self, value: SkuValue) -> bool:
        stock = value.stock
        if not self.matches_sku(stock.sku):
            return False
        if self.location is not None and self.location not in stock.locations:
            return False
        if self.channel is not None and self.channel not in stock.reserved and self.channel not in value.allocation.quantities:
            return False
        return self.below is None or ats(stock) < self.below

    def params(self) -> dict[str, str]:
        """The query again as URL parameters (forwarded to the other workers)."""
        out = {name: str(getattr(self, name)) for name in ("channel", "location", "below", "q", "after") if getattr(self, name) is not None}
        out["limit"] = str(self.limit)
        if self.history:
            out["history"] = "true"
        return out


def parse_ats_query(params: Mapping[str, str]) -> AtsQuery:
    """Raises ValueError naming the parameter that is wrong."""
    def integer(name: str) -> Optional[int]:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name}: not an integer: {raw!r}") from None

    limit = integer("limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit: must be 1..{MAX_LIMIT}, got {limit}")
    history = params.get("history", "false").lower()
    if history not in ("true", "false", "1", "0"):
        raise ValueError(f"history: true or false, got {history!r}")
    return AtsQuery(
        channel=params.get("channel") or None,
        location=params.get("location") or None,
        below=integer("below"),
        q=params.get("q") or None,
        limit=limit,
        history=history in ("true", "1"),
        after=params.get("after") or None,
    )


def parse_partitions(raw: Optional[str], total: int) -> list[int]:
    if not raw:
        return list(range(total))
    try:
        partitions = sorted({int(p) for p in raw.split(",")})
    except ValueError:
        raise ValueError(f"partitions: comma-separated integers, got {raw!r}") from None
    if partitions[0] < 0 or partitions[-1] >= total:
        raise ValueError(f"partitions: 0..{total - 1}, got {raw!r}")
    return partitions


def local_ats_answer(
    values: Iterable[SkuValue], query: AtsQuery, partitions: list[int], read_to: Optional[str] = None,
    matched_count: Optional[int] = None,
) -> dict:
    """One worker's part of `GET /ats`: the matching SKUs of `values` (its partitions), sorted, at
    most `limit` of them. `values` holds every SKU of those partitions after `query.after` up to
    `read_to` included (None: to the end; a bounded read stops earlier, streams/table_scan.py).

    `total`: how many of the SKUs read matched; `complete`: whether the read reached the end (only
    then is `total` every match; an int either way, so that a worker of an older version merging
    this answer during a rolling upgrade still can). `resume_after`: the SKU up to which this
    answer is complete (the last item when more matched than `limit`, else `read_to`); None when
    it is complete to the end.

    `matched_count`: for queries whose keys alone decide (`reads_values` false), how many keys
    matched when `values` holds only the first `limit` of them: the rest need no decoding."""
    matched = sorted((v for v in values if query.matches(v)), key=lambda v: v.stock.sku)
    count = len(matched) if matched_count is None else matched_count
    resume_after = matched[query.limit - 1].stock.sku if count > query.limit else read_to
    return {"items": [list_item(v) for v in matched[: query.limit]], "total": count, "complete": read_to is None,
            "resume_after": resume_after, "partitions": partitions}


def local_ats_read(
    items: list[tuple[bytes, bytes]], read_to: Optional[bytes], query: AtsQuery, partitions: list[int]
) -> dict:
    """`local_ats_answer` over (key, value) pairs read from the stock table in key order, every key
    after `query.after` up to `read_to` (streams/table_scan.py). Values are decoded only where
    needed: for a query its keys decide (the dashboard's unfiltered view), only the SKUs listed."""
    matching = [raw for key, raw in items if query.matches_sku(key.decode("utf-8", "replace"))]
    read_to_sku = None if read_to is None else read_to.decode("utf-8", "replace")
    if query.reads_values:
        return local_ats_answer([read_sku_value(raw) for raw in matching], query, partitions, read_to_sku)
    return local_ats_answer([read_sku_value(raw) for raw in matching[: query.limit]], query, partitions, read_to_sku,
                            matched_count=len(matching))


def merge_ats_answers(answers: Iterable[dict], limit: int) -> dict:
    """The page of `limit` SKUs every worker's answer is complete for, and where the next starts:
    items past the first SKU at which any worker stopped are left to the next page (they may come
    before items that worker has not read yet), so pages never skip or repeat a SKU."""
    answers = list(answers)
    stops = [answer["resume_after"] for answer in answers if answer.get("resume_after") is not None]
    complete_to = min(stops) if stops else None
    items = sorted((item for answer in answers for item in answer["items"]
                    if complete_to is None or item["sku"] <= complete_to), key=lambda item: item["sku"])
    next_after = complete_to
    if len(items) > limit:
        items = items[:limit]
        next_after = items[-1]["sku"]
    # Answers of older workers (rolling upgrade) have no `complete`: they read everything.
    complete = all(answer.get("complete", True) for answer in answers)
    total = sum(answer["total"] for answer in answers) if complete else None
    partitions = sorted(p for answer in answers for p in answer["partitions"])
    return {"items": items, "total": total, "truncated": next_after is not None, "next_after": next_after,
            "partitions": partitions}


class RiskCandidate(NamedTuple):
    """What the at-risk list needs of one SKU, without the rest of its value: the summary keeps
    thousands of them (streams/api_summary.py)."""

    sku: str
    ats: int
    rates: tuple[DecayedRate, ...]  # each channel's sell-through

    @classmethod
    def of(cls, value: SkuValue) -> "RiskCandidate":
        return cls(value.stock.sku, ats(value.stock), tuple(value.allocation.rates.values()))

    def days_of_cover(self, at_ms: int) -> Optional[tuple[float, float]]:
        """(days of cover, units sold per day) at `at_ms`; None while the SKU sells nothing."""
        rate = sum(r.rate(at_ms) for r in self.rates)
        if rate <= 0:
            return None
        return self.ats / rate, rate

    def cover_at_risk(self, at_ms: int, threshold_days: float) -> Optional[tuple[float, float]]:
        """`days_of_cover` if the ATS covers fewer than `threshold_days` days of sales, else None."""
        cover = self.days_of_cover(at_ms)
        return None if cover is None or cover[0] >= threshold_days else cover

    def entry(self, at_ms: int, threshold_days: float) -> Optional[dict]:
        """The SKU if its ATS covers fewer than `threshold_days` days of sales at the current rate."""
        cover = self.cover_at_risk(at_ms, threshold_days)
        if cover is None:
            return None
        days, rate = cover
        return {"sku": self.sku, "ats": self.ats, "units_per_day": round(rate, 3), "days_of_cover": round(days, 3)}


def local_summary_answer(
    skus: int, candidates: Iterable[RiskCandidate], at_ms: int, threshold_days: float, changes: list[dict],
    partitions: list[int], read_at_ms: Optional[int] = None, at_risk_not_listed: int = 0,
    pending: Iterable[int] = (),
) -> dict:
    """One worker's part of `GET /api/summary`: its SKU count, SKUs at risk and recent allocation
    changes (of SKUs in `partitions` only: `changes` must already be filtered). `candidates`: the
    SKUs that may be at risk at `at_ms` (every SKU, or those at risk when last read: without a
    write, days of cover only grow). `at_risk_not_listed`: more SKUs at risk when last read, counted
    but not kept. `read_at_ms`: when the oldest of the figures was read. `pending`: partitions whose
    first read is not finished (their figures so far are included)."""
    risky = []
    for candidate in candidates:
        entry = candidate.entry(at_ms, threshold_days)
        if entry is not None:
            risky.append(entry)
    risky.sort(key=_risk_order)
    changes = sorted(changes, key=_change_order)[:RECENT_CHANGES_LIMIT]
    return {"skus": skus, "at_risk": risky[:AT_RISK_LIMIT], "at_risk_total": len(risky) + at_risk_not_listed,
            "recent_changes": changes, "partitions": partitions, "read_at_ms": read_at_ms,
            "pending_partitions": sorted(pending)}


def _risk_order(entry: dict) -> tuple:
    return (entry["days_of_cover"], entry["sku"])


def _change_order(change: dict) -> tuple:
    return (-change["at_ms"], change["sku"], change["channel"])


def merge_summaries(answers: Iterable[dict]) -> dict:
    answers = list(answers)
    skus = 0
    risky: list[dict] = []
    risky_total = 0
    changes: list[dict] = []
    partitions: list[int] = []
    read_at = [answer["read_at_ms"] for answer in answers if answer.get("read_at_ms") is not None]
    for answer in answers:
        skus += answer["skus"]
        risky.extend(answer["at_risk"])
        risky_total += answer["at_risk_total"]
        changes.extend(answer["recent_changes"])
        partitions.extend(answer["partitions"])
    risky.sort(key=_risk_order)
    changes.sort(key=_change_order)
    return {"skus": skus, "at_risk": risky[:AT_RISK_LIMIT], "at_risk_total": risky_total,
            "recent_changes": changes[:RECENT_CHANGES_LIMIT], "partitions": sorted(partitions),
            "read_at_ms": min(read_at) if read_at else None,
            "pending_partitions": sorted(p for answer in answers for p in answer.get("pending_partitions", []))}
