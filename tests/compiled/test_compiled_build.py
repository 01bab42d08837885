"""The compiled build of the hot path (stockstream/compiled.py) behaves exactly like the sources:
the domain, connector, codec and fuzz suites run again, in a copy of the tree whose hot modules
are compiled by Cython, and must pass there too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stockstream import compiled

# Not the integration or deploy suites: they test Kafka and manifests, not what compilation changes.
SUITES = ("tests/unit", "tests/fuzz")


@pytest.fixture(scope="module")
def compiled_tree(tmp_path_factory) -> Path:
    # The rest of the repository too: the suites read bench/, deploy/, README.md...
    rest = tuple(entry.name for entry in compiled.SOURCE_ROOT.iterdir()
                 if not entry.name.startswith(".") and entry.name not in (*compiled.PACKAGES, "build"))
    return compiled.build_tree(tmp_path_factory.mktemp("compiled"), extra=rest)


def _run(tree: Path, *args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], **compiled.runs_from(tree, os.environ), capture_output=True, text=True,
                          timeout=timeout)


def test_every_hot_module_loads_compiled_and_the_worker_says_so(compiled_tree):
    probe = ("import json; from stockstream import compiled; from streams import metrics, worker; "
             "print(json.dumps([compiled.compiled_modules(), worker.report_build(), "
             "metrics.REGISTRY.get_sample_value('stockstream_hot_path_compiled')]))")
    status, reported, gauge = json.loads(_run(compiled_tree, "-c", probe, timeout=60).stdout)
    assert status and all(status.values()), [name for name, is_compiled in status.items() if not is_compiled]
    assert reported is True and gauge == 1


def test_the_sources_here_run_pure_python_and_the_worker_says_so():
    from streams import metrics, worker

    assert not any(compiled.compiled_modules().values())
    assert worker.report_build() is False
    assert metrics.REGISTRY.get_sample_value("stockstream_hot_path_compiled") == 0


def test_the_suites_pass_against_the_compiled_tree(compiled_tree):
    result = _run(compiled_tree, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not integration",
                  *SUITES, timeout=1200)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
