"""Reading ATS back from a running worker, for integration tests."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Callable, Iterable, Optional

from stockstream.process import WorkerProcess


def ats_over_http(worker: WorkerProcess, sku: str, as_of: Optional[int] = None) -> Optional[int]:
    query = "" if as_of is None else f"?as_of={as_of}"
    try:
        with urllib.request.urlopen(f"{worker.url}/ats/{sku}{query}", timeout=30) as response:
            return json.loads(response.read())["ats"]
    except OSError:
        return None


def wait_for_expected(
    worker: WorkerProcess, skus: Iterable[str], expected: Callable[[str], int], timeout: float
) -> dict[str, tuple[Optional[int], int]]:
    """Polls until every SKU's ATS equals `expected(sku)`; returns the differences left at timeout."""
    skus = list(skus)
    deadline = time.monotonic() + timeout
    while True:
        assert worker.alive, f"worker died:\n{worker.log_tail()}"
        wrong = {}
        for sku in skus:
            got, want = ats_over_http(worker, sku), expected(sku)
            if got != want:
                wrong[sku] = (got, want)
        if not wrong or time.monotonic() > deadline:
            return wrong
        time.sleep(1)
