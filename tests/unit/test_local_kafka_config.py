"""The embedded broker's files and bookkeeping, without starting Java or reaching Maven Central."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stockstream.kafka import local
from stockstream.kafka.local import (
    BrokerStatus,
    LocalKafka,
    LocalKafkaError,
    ToolMissingError,
    broker_properties,
    escape_property_value,
    new_cluster_id,
    render_pom,
    render_properties,
    resolve_jars,
)
from stockstream.settings import Settings


def parse_with_java_semantics(text: str) -> dict[str, str]:
    """Just enough of java.util.Properties.load to check what the broker will read."""
    parsed = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, raw = line.split("=", 1)
        parsed[key] = raw.encode("latin-1").decode("unicode_escape").encode("utf-16", "surrogatepass").decode("utf-16")
    return parsed


# ---- server.properties


def test_broker_listens_where_it_advertises(tmp_path: Path) -> None:
    props = broker_properties(host="127.0.0.1", port=29092, controller_port=29093, storage_dir=tmp_path)

    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:29093"
    assert props["process.roles"] == "broker,controller"
    assert props["log.dirs"] == str(tmp_path)


def test_internal_topics_fit_a_single_node(tmp_path: Path) -> None:
    props = broker_properties(host="127.0.0.1", port=1, controller_port=2, storage_dir=tmp_path)

    for key, value in props.items():
        if key.endswith(("replication.factor", "min.isr")):
            assert value == "1", key
    assert props["auto.create.topics.enable"] == "true"


def test_rendered_properties_round_trip_odd_paths() -> None:
    odd_path = "/data/库存 stock/C:\\x/\U0001f4e6=box:1"
    rendered = render_properties({"log.dirs": odd_path, "node.id": "1"}, header="line one\nline two")

    assert rendered.startswith("# line one\n# line two\n")
    assert rendered.isascii()
    assert parse_with_java_semantics(rendered) == {"log.dirs": odd_path, "node.id": "1"}


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [("plain", "plain"), ("a\\b", "a\\\\b"), (" lead", "\\ lead"), ("é", "\\u00e9"), ("\U0001f4e6", "\\ud83d\\udce6")],
)
def test_escape_property_value(raw: str, escaped: str) -> None:
    assert escape_property_value(raw) == escaped


def test_cluster_id_looks_like_kafkas() -> None:
    for _ in range(200):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


# ---- pom.xml


def test_pom_pins_the_requested_kafka_version() -> None:
    pom = render_pom("4.2.1")

    assert "<kafka.version>4.2.1</kafka.version>" in pom
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom


# ---- the jar cache, with a fake mvn


@pytest.fixture
def fake_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `mvn` on PATH that "resolves" two jars slowly and counts its runs in calls.log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    script = bin_dir / "mvn"
    script.write_text(
        f"""#!{sys.executable}
import sys, time, pathlib
out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-DoutputDirectory="))
with open({str(calls)!r}, "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\\n")
time.sleep(0.5)
for name in ("kafka_2.13-9.9.9.jar", "kafka-clients-9.9.9.jar"):
    (pathlib.Path(out) / name).write_bytes(b"jar")
"""
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return calls


def test_jars_are_resolved_once(tmp_path: Path, fake_maven: Path) -> None:
    libs = resolve_jars(tmp_path / "home", "9.9.9")
    again = resolve_jars(tmp_path / "home", "9.9.9")

    assert libs == again == tmp_path / "home" / "9.9.9" / "libs"
    assert len(fake_maven.read_text().splitlines()) == 1
    assert (libs / "kafka_2.13-9.9.9.jar").exists()
    assert (libs / local.RESOLVED_MARKER).read_text().split() == ["kafka-clients-9.9.9.jar", "kafka_2.13-9.9.9.jar"]
    assert "<kafka.version>9.9.9</kafka.version>" in (libs.parent / "pom.xml").read_text()


def test_concurrent_resolves_run_maven_once(tmp_path: Path, fake_maven: Path) -> None:
    # Separate processes, as with two pytest sessions: flock serialises them.
    code = "import sys; from stockstream.kafka.local import resolve_jars; print(resolve_jars(sys.argv[1], '9.9.9'))"
    runs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "home")], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=60)[0].strip() for run in runs]

    assert all(run.returncode == 0 for run in runs)
    assert set(outputs) == {str(tmp_path / "home" / "9.9.9" / "libs")}
    assert len(fake_maven.read_text().splitlines()) == 1
    assert [p.name for p in (tmp_path / "home" / "9.9.9").iterdir() if p.name.startswith("libs.")] == []


def test_threads_resolving_together_share_one_result(tmp_path: Path, fake_maven: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(resolve_jars(tmp_path / "home", "9.9.9"))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(results)) == 1 and len(results) == 3
    assert len(fake_maven.read_text().splitlines()) == 1


def test_failed_resolve_leaves_no_cache(tmp_path: Path, fake_maven: Path) -> None:
    # The fake "resolves" 9.9.9 jars only, so asking for another version looks like a bad resolve.
    with pytest.raises(LocalKafkaError, match="kafka_2.13-1.0.0.jar"):
        resolve_jars(tmp_path / "home", "1.0.0")

    assert sorted(p.name for p in (tmp_path / "home" / "1.0.0").iterdir()) == [".resolve.lock", "pom.xml"]


def test_missing_tools_name_the_debian_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)

    with pytest.raises(ToolMissingError, match="apt-get install default-jdk-headless maven"):
        local.find_java()
    with pytest.raises(ToolMissingError, match="`mvn` not found"):
        resolve_jars(tmp_path / "home", "9.9.9")


# ---- LocalKafka without a process


def test_from_settings_uses_the_kafka_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        kafka_home=tmp_path / "home",
        kafka_port=39092,
        kafka_controller_port=39093,
        kafka_heap="1g",
        kafka_version="4.2.0",
    )
    broker = LocalKafka.from_settings(settings)

    assert broker.bootstrap_servers == "127.0.0.1:39092"
    assert broker.data_dir == tmp_path / "data" / "kafka"
    assert (broker.version, broker.heap, broker.controller_port) == ("4.2.0", "1g", 39093)
    assert broker.detach


def test_relative_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pid check compares the broker's command line, which must not depend on the caller's cwd.
    monkeypatch.chdir(tmp_path)
    assert LocalKafka(data_dir=Path("rel/kafka")).data_dir == tmp_path / "rel" / "kafka"


@pytest.mark.parametrize("heap", ["512m", "2g", "2G", "786432k"])
def test_jvm_heap_sizes_are_accepted(heap: str, tmp_path: Path) -> None:
    assert LocalKafka(data_dir=tmp_path, heap=heap).heap == heap


@pytest.mark.parametrize("heap", ["", "768", "lots", "-1g", "0m", "1 g"])
def test_bad_heap_is_rejected(heap: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="heap"):
        LocalKafka(data_dir=tmp_path, heap=heap)


def test_same_broker_and_controller_port_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ports must differ"):
        LocalKafka(data_dir=tmp_path, port=1234, controller_port=1234)


def test_stale_pid_file_is_not_a_running_broker(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path)
    # Our own pid: alive, but not a Kafka broker of this data dir.
    broker.pid_file.write_text(f"{os.getpid()}\n")

    assert broker._running_pid() is None
    broker.stop()
    assert not broker.pid_file.exists()


def test_stop_of_a_never_started_broker_is_a_no_op(tmp_path: Path) -> None:
    LocalKafka(data_dir=tmp_path / "never").stop()
    assert not (tmp_path / "never").exists()


def test_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path)
    assert "no broker log" in broker.log_tail()
    broker.log_file.write_text("".join(f"line {n}\n" for n in range(100)))

    assert broker.log_tail(3) == "line 97\nline 98\nline 99"


def test_status_descriptions(tmp_path: Path) -> None:
    def status(**kw: object) -> BrokerStatus:
        base = dict(version="4.3.0", bootstrap_servers="127.0.0.1:19092", data_dir=tmp_path, pid=None)
        return BrokerStatus(**{**base, "port_open": False, "kafka_answers": False, **kw})  # type: ignore[arg-type]

    serving = status(pid=42, port_open=True, kafka_answers=True)
    assert serving.serving and "serving at 127.0.0.1:19092 (pid 42" in serving.describe()
    assert "still starting" in status(pid=42).describe()
    assert "another Kafka broker" in status(port_open=True, kafka_answers=True).describe()
    assert not status(port_open=True, kafka_answers=True).serving
    assert "another process listens" in status(port_open=True).describe()
    assert "not running" in status().describe()
