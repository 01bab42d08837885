"""How much work the pipeline has not committed yet: what a kill interrupts, and what 'drained' means."""

from __future__ import annotations

from stockstream.lag import group_lag
from stockstream.settings import Settings
from stockstream.topics import ALL_TOPICS


def pipeline_lag(settings: Settings) -> int:
    """Records not yet committed by the ingest batcher (raw topics) and the agents (internal topics)."""
    app = settings.topic(settings.app_id)
    raw = [settings.topic(spec.name) for spec in ALL_TOPICS if spec.name.startswith("raw.")]
    internal = [settings.topic("ingest"), settings.topic("movements")]
    return group_lag(settings.bootstrap_servers, f"{app}-ingest", raw, settings.partitions) + group_lag(
        settings.bootstrap_servers, app, internal, settings.partitions
    )
