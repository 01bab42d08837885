"""``stockstream rules set|show``: the allocation rules in the compacted ``allocation-rules`` topic
(format: stockstream/rules_topic.py). `set` publishes a rule record and the commands that make
the workers re-allocate at once; running workers pick both up live."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Optional

import typer

from stockstream.core.allocation import merge_rules
from stockstream.rules_topic import DEFAULTS_KEY, RulesRecord, validate
from stockstream.settings import get_settings

rules_app = typer.Typer(
    no_args_is_help=True, help="Allocation rules: the compacted `allocation-rules` topic every worker follows."
)


def next_record(key: str, data: Mapping, current_version: Optional[int], defaults=None) -> RulesRecord:
    """The record to publish for `data` under `key`: its own version if it names one (it must be
    above the current one: a re-allocation of an unchanged ATS happens only under a higher rule
    version), else the current version + 1. `defaults`: the rules a SKU's overrides merge over,
    checked here so that a record that cannot apply is refused before it is published.
    Raises ValueError."""
    if not isinstance(data, Mapping):
        raise ValueError("the rules file must hold a JSON object")
    data = dict(data)
    floor = current_version if current_version is not None else 0
    if "version" not in data:
        data["version"] = floor + 1
    elif type(data["version"]) is not int or data["version"] <= floor:
        raise ValueError(f"version {data['version']!r} must be an integer above the current version {floor}")
    data = validate(key, data)
    if key != DEFAULTS_KEY and defaults is not None:
        merge_rules(defaults, data)
    return RulesRecord(key, data)


@rules_app.command("set")
def rules_set(
    file: Path = typer.Option(..., "--file", help="JSON rules (README: Allocation rules)", exists=True, dir_okay=False),
    sku: str = typer.Option("", "--sku", help="overrides for this master SKU"),
    default: bool = typer.Option(False, "--default", help="the defaults for every SKU"),
) -> None:
    """Publish rules for one SKU or the defaults; workers re-allocate within seconds."""
    from stockstream.rules_topic import publish_rules
    from stockstream.topics import ALLOCATION_COMMANDS, ALLOCATION_RULES, ensure_topics
    from streams.rules_feed import read_rules

    if bool(sku) == default:
        raise typer.BadParameter("give exactly one of --sku X and --default")
    key = DEFAULTS_KEY if default else sku
    settings = get_settings()
    ensure_topics(settings, (ALLOCATION_RULES, ALLOCATION_COMMANDS))
    book = read_rules(settings)
    try:
        record = next_record(key, json.loads(file.read_text(encoding="utf-8")), book.versions_seen.get(key), book.defaults)
    except (ValueError, TypeError, KeyError) as exc:  # json.JSONDecodeError is a ValueError
        typer.echo(f"rules not published: {exc}", err=True)
        raise typer.Exit(2)
    command = publish_rules(settings, record)
    what = "defaults" if default else f"rules of {sku}"
    typer.echo(f"{what} v{record.version} published; workers re-allocate ({command.to_json().decode()})")


@rules_app.command("show")
def rules_show(sku: str = typer.Option("", "--sku", help="one master SKU: its overrides and effective rules")) -> None:
    """Print the rules in force (JSON): the defaults and which SKUs override them, or one SKU's."""
    from stockstream.topics import ALLOCATION_RULES, ensure_topics
    from streams.rules_feed import read_rules

    settings = get_settings()
    ensure_topics(settings, (ALLOCATION_RULES,))
    book = read_rules(settings)
    if sku:
        out = {"sku": sku, "overrides": book.overrides.get(sku), "effective": book.rules_for(sku).to_dict()}
    else:
        out = {
            "defaults": book.defaults.to_dict(),
            "defaults_from": "topic" if book.defaults is not book.fallback_defaults else "settings (STOCKSTREAM_SHOPS)",
            "overrides": {name: data["version"] for name, data in sorted(book.overrides.items())},
        }
    typer.echo(json.dumps(out, indent=2))
