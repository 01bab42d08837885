"""deploy/k8s: the kustomizations render offline, every built-in resource is valid against the
Kubernetes JSON schemas (kubernetes-validate, strict: unknown fields fail), the CRDs (KEDA
ScaledObject, prometheus-operator ServiceMonitor) are checked by hand, and the resources refer
to each other correctly."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.kustomize_lite import load_documents, pod_containers, pod_spec, render

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"
CRD_KINDS = {"ScaledObject", "ServiceMonitor"}
KUSTOMIZATIONS = sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def by_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def workloads(resources: list[dict]) -> list[dict]:
    return [r for r in resources if pod_spec(r) is not None]


@pytest.fixture(scope="module", params=[p.relative_to(K8S).as_posix() for p in KUSTOMIZATIONS])
def rendered(request) -> list[dict]:
    return render(K8S / request.param)


def test_base_and_local_overlay_exist() -> None:
    assert {p.relative_to(K8S).as_posix() for p in KUSTOMIZATIONS} >= {"base", "overlays/local"}


def test_every_yaml_file_parses_and_every_referenced_file_exists() -> None:
    for path in K8S.rglob("*.yaml"):
        assert load_documents(path), path
    for directory in KUSTOMIZATIONS:
        kustomization = load_documents(directory / "kustomization.yaml")[0]
        for entry in kustomization.get("resources", []) + [p["path"] for p in kustomization.get("patches", [])]:
            assert (directory / entry).exists(), f"{directory}/kustomization.yaml names missing {entry}"
        listed = {(directory / e).resolve() for e in kustomization.get("resources", [])}
        listed |= {(directory / p["path"]).resolve() for p in kustomization.get("patches", [])}
        for path in directory.glob("*.yaml"):
            assert path.name == "kustomization.yaml" or path.resolve() in listed, f"{path} is not used"


def test_builtin_resources_match_the_kubernetes_schemas(rendered) -> None:
    for resource in rendered:
        if resource["kind"] in CRD_KINDS:
            continue
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field(rendered) -> None:
    worker = copy.deepcopy(by_kind(rendered, "StatefulSet")["stockstream-worker"])
    worker["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = worker["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, KUBERNETES_VERSION, strict=True)


def test_worker_statefulset(rendered) -> None:
    worker = by_kind(rendered, "StatefulSet")["stockstream-worker"]
    spec = worker["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    # RocksDB on a per-pod volume, mounted where the worker keeps its tables
    claim = spec["volumeClaimTemplates"][0]["metadata"]["name"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim] == env["STOCKSTREAM_DATA_DIR"]
    # probes on the paths the worker serves
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    # peers reach each other by pod DNS name through the headless service
    headless = by_kind(rendered, "Service")[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    assert env["STOCKSTREAM_WEB_ADVERTISED_HOST"] == f"$(POD_NAME).{spec['serviceName']}"
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", []) + [
        t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
    ]
    assert any(selects(t["labelSelector"]["matchLabels"], spec["template"]["metadata"]["labels"]) for t in terms)
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_base_workers_never_share_a_node() -> None:
    worker = by_kind(render(K8S / "base"), "StatefulSet")["stockstream-worker"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in worker["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]


def test_services_and_pdb_select_existing_pods(rendered) -> None:
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(rendered)]
    for name, service in by_kind(rendered, "Service").items():
        assert any(selects(service["spec"]["selector"], labels) for labels in pod_labels), f"service {name} selects no pod"
    for name, pdb in by_kind(rendered, "PodDisruptionBudget").items():
        assert any(selects(pdb["spec"]["selector"]["matchLabels"], labels) for labels in pod_labels), name
    for workload in workloads(rendered):
        assert selects(workload["spec"]["selector"]["matchLabels"], workload["spec"]["template"]["metadata"]["labels"])


def test_service_target_ports_are_container_ports(rendered) -> None:
    for name, service in by_kind(rendered, "Service").items():
        pods = [w for w in workloads(rendered) if selects(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        port_names = {p["name"] for w in pods for c in pod_containers(w) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, f"service {name} targets missing port {port['targetPort']}"


def test_config_and_secret_references_resolve_in_the_overlay() -> None:
    resources = render(K8S / "overlays" / "local")
    config_maps, secrets = by_kind(resources, "ConfigMap"), by_kind(resources, "Secret")
    for workload in workloads(resources):
        for container in pod_containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, workload["metadata"]["name"]
        for volume in pod_spec(workload).get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps, workload["metadata"]["name"]


def test_the_channel_sink_reads_its_listings_from_a_mounted_config_map() -> None:
    # Without a listings export the sink refuses to start.
    resources = render(K8S / "overlays" / "local")
    sink = by_kind(resources, "Deployment")["stockstream-channel-sink"]
    (container,) = pod_containers(sink)
    path = next(e["value"] for e in container["env"] if e["name"] == "STOCKSTREAM_LISTINGS_PATH")
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod_spec(sink)["volumes"] if v["name"] == mount["name"])
    listings = by_kind(resources, "ConfigMap")[volume["configMap"]["name"]]
    assert path.rpartition("/")[2] in listings["data"]


def test_images_are_set_by_kustomize(rendered) -> None:
    for workload in workloads(rendered):
        for container in pod_containers(workload):
            assert re.fullmatch(r"stockstream:[\w.-]+", container["image"]), container["image"]


def test_scaled_object_scales_the_workers_up_to_the_partition_count(rendered) -> None:
    scaled = by_kind(rendered, "ScaledObject")["stockstream-worker"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert target["kind"] == "StatefulSet" and target["name"] in by_kind(rendered, "StatefulSet")
    partitions = int(by_kind(rendered, "ConfigMap")["stockstream-config"]["data"]["STOCKSTREAM_PARTITIONS"])
    assert scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"] <= partitions
    groups = set()
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert meta["bootstrapServersFromEnv"] == "STOCKSTREAM_BOOTSTRAP_SERVERS"
        assert meta["allowIdleConsumers"] == "false"
        assert int(meta["lagThreshold"]) > 0
        groups.add(meta["consumerGroup"])
    app_id = by_kind(rendered, "ConfigMap")["stockstream-config"]["data"]["STOCKSTREAM_APP_ID"]
    assert groups == {app_id, f"{app_id}-ingest"}  # the Faust app's group and the ingest batcher's


def test_service_monitor_scrapes_every_process_under_the_alerts_job_names(rendered) -> None:
    monitor = by_kind(rendered, "ServiceMonitor")["stockstream"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    label = monitor["spec"]["jobLabel"]
    assert monitor["spec"]["selector"]["matchExpressions"] == [{"key": label, "operator": "Exists"}]
    port = monitor["spec"]["endpoints"][0]["port"]
    scraped = {name: s for name, s in by_kind(rendered, "Service").items() if label in s["metadata"].get("labels", {})}
    jobs = {s["metadata"]["labels"][label] for s in scraped.values()}
    compose_jobs = {
        job["job_name"]
        for job in yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
        if job["job_name"].startswith("stockstream-")
    }
    assert jobs == compose_jobs
    for name, service in scraped.items():
        assert port in {p["name"] for p in service["spec"]["ports"]}, name
    scraped_pods = {w["metadata"]["name"] for w in workloads(rendered)
                    if any(selects(s["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"]) for s in scraped.values())}
    assert scraped_pods == {w["metadata"]["name"] for w in workloads(rendered)}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed: only the offline rendering is checked")
def test_offline_rendering_equals_kubectl_kustomize(rendered, request) -> None:
    directory = K8S / request.node.callspec.params["rendered"]
    result = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    key = lambda r: (r["kind"], r["metadata"]["name"])  # noqa: E731
    assert sorted(rendered, key=key) == sorted((d for d in yaml.safe_load_all(result.stdout) if d), key=key)


def test_every_stockstream_variable_is_a_setting(rendered) -> None:
    from stockstream.settings import Settings

    fields = {f"STOCKSTREAM_{field.upper()}" for field in Settings.model_fields}
    for resource in workloads(rendered):
        for container in pod_containers(resource):
            for variable in container.get("env", []):
                if variable["name"].startswith("STOCKSTREAM_"):
                    assert variable["name"] in fields, f"{resource['metadata']['name']}: {variable['name']} is no setting"
    for config_map in by_kind(rendered, "ConfigMap").values():
        if any(source.get("configMapRef", {}).get("name") == config_map["metadata"]["name"]
               for resource in workloads(rendered) for container in pod_containers(resource)
               for source in container.get("envFrom", [])):
            assert set(config_map["data"]) <= fields
