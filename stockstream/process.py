"""Start, stop and kill stockstream worker processes: for the demo, the tests and the benchmarks.

Workers run as real OS processes (``python -m stockstream worker``), so crash tests kill -9 a
real process and restarts recover from real changelogs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional

from stockstream import compiled
from stockstream.settings import Settings


class WorkerProcess:
    def __init__(self, settings: Settings, log_path: Optional[Path] = None, code_dir: Optional[Path] = None) -> None:
        """`code_dir`: run the packages found there (a compiled copy, stockstream/compiled.py)
        instead of the installed ones."""
        self.settings = settings
        self.log_path = log_path or Path(settings.data_dir) / f"worker-{settings.web_port}.log"
        self.code_dir = code_dir
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def start(self) -> "WorkerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        options = {"env": env} if self.code_dir is None else compiled.runs_from(self.code_dir, env)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stockstream", "worker"],
            **options,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the worker's web server answers (it starts once the app has joined its group)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/ats/__ready_probe__", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # any HTTP answer means the server is up
            except OSError:
                time.sleep(0.25)
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log_tail()}")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM: Faust commits and closes; SIGKILL if it does not finish in time."""
        if not self.alive:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """kill -9: no commit, no flush, no goodbye. What a crash test wants."""
        if self.alive:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the worker's /metrics (0 while the series has no sample yet)."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        for family in text_string_to_metric_families(exposition):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
        return 0.0
