"""Saves each current schema version that history/ does not hold yet, self-contained.

    python -m schemas.snapshot

Run it before changing a schema, so the version already on the wire stays readable. Because
history files are self-contained, this also covers schemas that merely embed the changed type
(MovementBatch embeds Movement). Files are named `<Name>.v<N>.avsc`, N counting per name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from schemas.registry import HISTORY_DIR, SCHEMA_DIR, load_current, load_history

_VERSIONED_FILE = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<number>\d+)\.avsc$")


def snapshot(directory: Path = SCHEMA_DIR, history_directory: Path = HISTORY_DIR) -> list[Path]:
    """Writes the missing versions and returns their paths."""
    saved = {version.fingerprint for version in load_history(history_directory)}
    written = []
    for version in load_current(directory):
        if version.fingerprint in saved:
            continue
        short_name = version.name.rpartition(".")[2]
        history_directory.mkdir(parents=True, exist_ok=True)
        path = history_directory / f"{short_name}.v{_next_number(history_directory, short_name)}.avsc"
        path.write_text(json.dumps(version.schema, indent=2) + "\n", encoding="utf-8")
        written.append(path)
    return written


def _next_number(history_directory: Path, short_name: str) -> int:
    numbers = [
        int(match["number"])
        for path in history_directory.glob(f"{short_name}.v*.avsc")
        if (match := _VERSIONED_FILE.match(path.name)) and match["name"] == short_name
    ]
    return max(numbers, default=0) + 1


if __name__ == "__main__":
    for path in snapshot():
        print(path)
