"""Moments given by people and platforms: epoch milliseconds or ISO 8601 with an offset."""

from __future__ import annotations

from datetime import datetime


def parse_moment(text: str) -> int:
    """Epoch ms from `1731254400000` or `2024-11-11T00:00:00+08:00` (an offset is required: a
    Shanghai operator and a Frankfurt ERP would read a bare time differently)."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (write e.g. 2024-11-11T20:00:00+08:00)")
    return int(moment.timestamp() * 1000)
