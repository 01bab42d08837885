"""A single-node Apache Kafka broker (KRaft) run from plain jars: no Docker, no Kafka install.

The jars are resolved once from Maven Central with ``mvn`` into ``<kafka_home>/<version>/libs``
and shared by every broker on the machine. Each broker owns one data directory::

    <data_dir>/server.properties    rewritten on every start, so port settings take effect
    <data_dir>/log4j2.properties
    <data_dir>/storage/             Kafka's log dirs: topics, offsets, the KRaft metadata log
    <data_dir>/broker.pid
    <data_dir>/broker.log           the broker's stdout and stderr (broker.log.1: previous run)

The data directory outlives the process, so topics and records survive stop/start and crashes.
Used by ``stockstream kafka start|stop|status`` (detached: the broker outlives the CLI) and by
the test fixtures (attached: stopped at the latest when the Python process exits).
"""

from __future__ import annotations

import atexit
import base64
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

from stockstream.settings import Settings

KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
DEBIAN_PACKAGES = "default-jdk-headless maven"
NODE_ID = 1

START_TIMEOUT_S = 90.0
# Kafka's controlled shutdown (flush, close logs, leave the quorum) takes a few seconds.
STOP_TIMEOUT_S = 30.0
MAVEN_TIMEOUT_S = 900.0
FORMAT_TIMEOUT_S = 120.0

RESOLVED_MARKER = ".resolved"
_SETTINGS_DEFAULTS = Settings.model_fields


class LocalKafkaError(RuntimeError):
    """The embedded broker could not be resolved, started or stopped."""


class ToolMissingError(LocalKafkaError):
    """java or mvn is not installed."""


# --------------------------------------------------------------------------------------------
# Tools and the jar cache


def find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home) / "bin" / "java", os.X_OK):
        return str(Path(java_home) / "bin" / "java")
    return _find_tool("java", "a Java 17+ runtime")


def find_maven() -> str:
    return _find_tool("mvn", "Apache Maven (it resolves the Kafka jars from Maven Central)")


def _find_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(
            f"`{name}` not found on PATH: the embedded Kafka broker needs {what}. "
            f"On Debian/Ubuntu: sudo apt-get install {DEBIAN_PACKAGES}"
        )
    return path


def render_pom(kafka_version: str) -> str:
    """The packaged pom.xml with ``kafka.version`` set, so the cache holds an exact record."""
    template = resources.files("stockstream.kafka").joinpath("pom.xml").read_text(encoding="utf-8")
    pom, replaced = re.subn(
        r"<kafka\.version>[^<]*</kafka\.version>", f"<kafka.version>{kafka_version}</kafka.version>", template
    )
    if replaced != 1:
        raise LocalKafkaError("stockstream/kafka/pom.xml must declare exactly one <kafka.version> property")
    return pom


def resolve_jars(kafka_home: Path, kafka_version: str) -> Path:
    """The directory holding every runtime jar of the broker; resolved with Maven the first time.

    Safe for concurrent callers (two test sessions, a test session and the CLI): one resolves
    under a file lock while the others wait, and jars land in a staging directory that is
    renamed into place only once complete, so a killed ``mvn`` never leaves a half-filled cache.
    """
    version_dir = Path(kafka_home).expanduser().absolute() / kafka_version
    libs = version_dir / "libs"
    if (libs / RESOLVED_MARKER).exists():
        return libs
    maven = find_maven()
    with _exclusive_lock(version_dir / ".resolve.lock"):
        if (libs / RESOLVED_MARKER).exists():
            return libs
        pom = version_dir / "pom.xml"
        pom.write_text(render_pom(kafka_version), encoding="utf-8")
        staging = Path(tempfile.mkdtemp(prefix="libs.staging.", dir=version_dir))
        try:
            _copy_dependencies(maven, pom, staging)
            jars = _check_resolved_jars(staging, kafka_version)
            (staging / RESOLVED_MARKER).write_text("\n".join(jars) + "\n", encoding="utf-8")
            if libs.exists():  # left by hand or by an older layout; never by this function
                shutil.rmtree(libs)
            staging.rename(libs)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return libs


def _copy_dependencies(maven: str, pom: Path, output_dir: Path) -> None:
    command = [
        maven, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={output_dir}", "-DincludeScope=runtime",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, cwd=pom.parent, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        raise LocalKafkaError(f"Maven did not finish resolving Kafka within {MAVEN_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        raise LocalKafkaError(
            f"Maven could not resolve the Kafka jars (exit {result.returncode}; pom: {pom}). Is Maven Central "
            f"reachable, or a mirror set in ~/.m2/settings.xml?\n{_last_lines(result.stdout + result.stderr, 40)}"
        )


def _check_resolved_jars(libs: Path, kafka_version: str) -> list[str]:
    jars = sorted(path.name for path in libs.glob("*.jar"))
    if f"kafka_2.13-{kafka_version}.jar" not in jars:
        raise LocalKafkaError(f"Maven finished but kafka_2.13-{kafka_version}.jar is not among the jars in {libs}")
    return jars


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Configuration files


def broker_properties(*, host: str, port: int, controller_port: int, storage_dir: Path) -> dict[str, str]:
    """server.properties of a combined broker+controller node that serves ``host:port`` only."""
    return {
        # One process is both the KRaft controller (metadata quorum of one) and the broker.
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(storage_dir),
        # A single node can hold one replica; the defaults (3) would make the internal topics
        # (consumer offsets, transactions, share groups) impossible to create.
        "num.partitions": "1",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Fewer internal partitions than the production defaults (50): each one costs file
        # handles and start-up time, and a single node gains no parallelism from them.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.num.partitions": "8",
        # Faust creates its topics itself; auto-creation only forgives tools that do not.
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        # Consumers in tests and demos should not wait 3 s for a group to settle.
        "group.initial.rebalance.delay.ms": "0",
        # Sized for a 2-core development machine.
        "num.network.threads": "2",
        "num.io.threads": "4",
        "background.threads": "4",
        "num.recovery.threads.per.data.dir": "2",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "log.cleaner.threads": "1",
        # The default 128 MiB would take a sixth of a small heap as soon as a compacted topic exists.
        "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
    }


def render_properties(properties: Mapping[str, str], header: str = "") -> str:
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"{key}={escape_property_value(value)}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


def escape_property_value(value: str) -> str:
    """Escape for java.util.Properties, which Kafka reads as ISO-8859-1 (paths may hold anything)."""
    out = []
    for index, char in enumerate(value):
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[char])
        elif char == " " and index == 0:  # Properties strips leading blanks of a value
            out.append("\\ ")
        elif 0x20 <= ord(char) < 0x7F:
            out.append(char)
        else:
            # \uXXXX is UTF-16: characters beyond the BMP become a surrogate pair.
            utf16 = char.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(utf16[i:i + 2], 'big'):04x}" for i in range(0, len(utf16), 2))
    return "".join(out)


def new_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` makes it, without starting a JVM for it.

    Kafka's Uuid is 16 random bytes in URL-safe base64 without padding; it rejects ids that
    start with '-' because they read as command-line options.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


# --------------------------------------------------------------------------------------------
# Probing


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def kafka_answers(bootstrap_servers: str, timeout: float = 5.0) -> bool:
    """Whether a Kafka broker serves metadata requests there (not merely accepts connections)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # log_level 0: a refused connection while the broker boots is expected, not worth a line.
    admin = AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(metadata.brokers)


def _process_is_broker(pid: int, server_properties: Path) -> bool:
    """Whether ``pid`` is a live broker started with this server.properties.

    Checking the command line, not just that the pid exists, makes a stale pid file harmless
    after a reboot or a crash, when the number may belong to an unrelated process.
    """
    proc = Path("/proc") / str(pid)
    if not Path("/proc/self").exists():  # not Linux: the pid file is all there is to go on
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    # A zombie has exited; it only waits for its parent to collect the exit status.
    return state != "Z" and KAFKA_MAIN_CLASS.encode() in argv and os.fsencode(server_properties) in argv


def _send_signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # exited between the check and the signal: the goal is met
        pass


def _last_lines(text: str, count: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-count:])


# --------------------------------------------------------------------------------------------
# The broker


@dataclass(frozen=True)
class BrokerStatus:
    version: str
    bootstrap_servers: str
    data_dir: Path
    pid: Optional[int]  # the broker process of this data directory, if it runs
    port_open: bool
    kafka_answers: bool  # something serves Kafka metadata requests at bootstrap_servers

    @property
    def serving(self) -> bool:
        return self.pid is not None and self.kafka_answers

    def describe(self) -> str:
        if self.serving:
            return f"kafka {self.version} serving at {self.bootstrap_servers} (pid {self.pid}, data in {self.data_dir})"
        if self.pid is not None:
            return (
                f"kafka {self.version} runs (pid {self.pid}) but does not answer at {self.bootstrap_servers}: "
                f"still starting, or stuck (see {self.data_dir / 'broker.log'})"
            )
        if self.kafka_answers:
            return f"kafka not running from {self.data_dir}, but another Kafka broker answers at {self.bootstrap_servers}"
        if self.port_open:
            return f"kafka not running; another process listens on {self.bootstrap_servers}"
        return f"kafka {self.version} not running (data in {self.data_dir})"


class LocalKafka:
    """One single-node KRaft broker on ``host:port`` with its data in ``data_dir``.

    ``detach=True`` (the CLI) starts the broker in its own session so that it outlives the
    calling process and its terminal. ``detach=False`` (tests) keeps it in the caller's process
    group, so Ctrl-C reaches it too, and stops it when the interpreter exits.
    """

    def __init__(
        self,
        *,
        data_dir: Path,
        version: str = _SETTINGS_DEFAULTS["kafka_version"].default,
        kafka_home: Path = _SETTINGS_DEFAULTS["kafka_home"].default,
        host: str = "127.0.0.1",
        port: int = _SETTINGS_DEFAULTS["kafka_port"].default,
        controller_port: int = _SETTINGS_DEFAULTS["kafka_controller_port"].default,
        heap: str = _SETTINGS_DEFAULTS["kafka_heap"].default,
        detach: bool = True,
        start_timeout: float = START_TIMEOUT_S,
    ) -> None:
        if not re.fullmatch(r"[0-9A-Za-z.\-]+", version):
            raise ValueError(f"not a Kafka version: {version!r}")
        # A bare number would be bytes to the JVM: always a mistake for a broker's heap.
        if not re.fullmatch(r"[1-9][0-9]*[kKmMgG]", heap):
            raise ValueError(f"kafka heap must be a JVM size such as 768m or 2g, not {heap!r}")
        if port == controller_port:
            raise ValueError(f"the broker and controller ports must differ (both {port})")
        self.version = version
        self.kafka_home = Path(kafka_home).expanduser().absolute()
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.host = host
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.detach = detach
        self.start_timeout = start_timeout
        self._process: Optional[subprocess.Popen[bytes]] = None
        self._stop_at_exit_registered = False

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> LocalKafka:
        options: dict[str, object] = {
            "version": settings.kafka_version,
            "kafka_home": settings.kafka_home,
            "data_dir": settings.data_dir / "kafka",
            "port": settings.kafka_port,
            "controller_port": settings.kafka_controller_port,
            "heap": settings.kafka_heap,
        }
        options.update(overrides)
        return cls(**options)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"LocalKafka(version={self.version!r}, bootstrap_servers={self.bootstrap_servers!r}, data_dir={str(self.data_dir)!r})"

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def server_properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_config_path(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def _lock_file(self) -> Path:
        return self.data_dir / "launcher.lock"

    # ---- lifecycle

    def start(self, timeout: Optional[float] = None) -> None:
        """Start the broker unless it runs already, and return once it serves requests."""
        timeout = self.start_timeout if timeout is None else timeout
        with _exclusive_lock(self._lock_file):
            launched = False
            if self._running_pid() is None:
                self._refuse_ports_in_use()
                java = find_java()
                libs = resolve_jars(self.kafka_home, self.version)
                self._write_config()
                self._format_storage_once(java, libs)
                self._launch(java, libs)
                launched = True
            try:
                self._wait_until_serving(timeout)
            except LocalKafkaError:
                # Never leave behind a half-started broker that nobody will stop.
                if launched:
                    self._terminate()
                raise

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Shut the broker down cleanly (SIGTERM), forcibly if it hangs; the data is kept."""
        if not self.data_dir.exists():
            return
        with _exclusive_lock(self._lock_file):
            self._terminate(timeout)

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; the pid file stays behind, as after a crash."""
        pid = self._running_pid()
        if pid is None:
            return
        _send_signal(pid, signal.SIGKILL)
        self._wait_for_exit(pid, 10.0)

    def restart(self, timeout: Optional[float] = None) -> None:
        self.stop()
        self.start(timeout)

    def status(self) -> BrokerStatus:
        is_open = port_open(self.host, self.port)
        return BrokerStatus(
            version=self.version,
            bootstrap_servers=self.bootstrap_servers,
            data_dir=self.data_dir,
            pid=self._running_pid(),
            port_open=is_open,
            kafka_answers=is_open and kafka_answers(self.bootstrap_servers),
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_file, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
                text = log.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return "(no broker log yet)"
        return _last_lines(text, lines)

    # ---- steps of start and stop

    def _running_pid(self) -> Optional[int]:
        if self._process is not None:
            if self._process.poll() is None:
                return self._process.pid
            self._process = None
        pid = self._read_pid_file()
        if pid is not None and _process_is_broker(pid, self.server_properties_path):
            return pid
        return None

    def _read_pid_file(self) -> Optional[int]:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _refuse_ports_in_use(self) -> None:
        for port in (self.port, self.controller_port):
            if port_open(self.host, port):
                raise LocalKafkaError(
                    f"cannot start kafka: {self.host}:{port} is already in use by another process (not the "
                    f"broker of {self.data_dir}). Stop that process, or choose other ports with "
                    "STOCKSTREAM_KAFKA_PORT / STOCKSTREAM_KAFKA_CONTROLLER_PORT."
                )

    def _write_config(self) -> None:
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        properties = broker_properties(
            host=self.host, port=self.port, controller_port=self.controller_port, storage_dir=self.storage_dir
        )
        header = "Written by stockstream.kafka.local on every start: edits here are overwritten."
        self.server_properties_path.write_text(render_properties(properties, header), encoding="ascii")
        log4j = resources.files("stockstream.kafka").joinpath("log4j2.properties").read_text(encoding="utf-8")
        self.log4j_config_path.write_text(log4j, encoding="utf-8")

    def _format_storage_once(self, java: str, libs: Path) -> None:
        if (self.storage_dir / "meta.properties").exists():
            return
        command = [
            java, "-Xmx256m", *self._logging_options(), "-cp", self._classpath(libs), STORAGE_TOOL_CLASS,
            "format", "--cluster-id", new_cluster_id(), "--config", str(self.server_properties_path),
            # This node alone forms the controller quorum.
            "--standalone",
        ]  # fmt: skip
        result = subprocess.run(
            command, cwd=self.data_dir, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S
        )
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting kafka storage in {self.storage_dir} failed (exit {result.returncode}):\n"
                f"{_last_lines(result.stdout + result.stderr, 40)}"
            )

    def _launch(self, java: str, libs: Path) -> None:
        self._keep_previous_log()
        with open(self.log_file, "ab") as log:
            self._process = subprocess.Popen(
                self._broker_command(java, libs),
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        if not self.detach and not self._stop_at_exit_registered:
            atexit.register(self._stop_at_exit)
            self._stop_at_exit_registered = True

    def _broker_command(self, java: str, libs: Path) -> list[str]:
        return [
            java,
            f"-Xmx{self.heap}",
            # Kafka's own start script settings: short pauses, and die rather than limp on OOM.
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *self._logging_options(),
            "-cp",
            self._classpath(libs),
            KAFKA_MAIN_CLASS,
            str(self.server_properties_path),
        ]

    def _logging_options(self) -> list[str]:
        return [f"-Dlog4j2.configurationFile={self.log4j_config_path}"]

    @staticmethod
    def _classpath(libs: Path) -> str:
        return str(libs / "*")

    def _keep_previous_log(self) -> None:
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))

    def _wait_until_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._running_pid() is None:
                raise LocalKafkaError(
                    f"kafka {self.version} exited while starting; last lines of {self.log_file}:\n{self.log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LocalKafkaError(
                    f"kafka {self.version} did not serve at {self.bootstrap_servers} within {timeout:.0f} s; "
                    f"last lines of {self.log_file}:\n{self.log_tail()}"
                )
            if port_open(self.host, self.port) and kafka_answers(self.bootstrap_servers, min(5.0, remaining)):
                return
            time.sleep(0.2)

    def _terminate(self, timeout: float = STOP_TIMEOUT_S) -> None:
        pid = self._running_pid()
        if pid is not None:
            _send_signal(pid, signal.SIGTERM)
            if not self._wait_for_exit(pid, timeout):
                _send_signal(pid, signal.SIGKILL)
                self._wait_for_exit(pid, 10.0)
        self.pid_file.unlink(missing_ok=True)
        self._process = None

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        if self._process is not None and self._process.pid == pid:
            try:
                self._process.wait(timeout)  # also reaps it, so it does not linger as a zombie
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _process_is_broker(pid, self.server_properties_path):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        return True

    def _stop_at_exit(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._terminate()
