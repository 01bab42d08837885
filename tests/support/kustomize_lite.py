"""Render a kustomization offline, in plain Python, for the tests of deploy/k8s.

Covers exactly the kustomize features deploy/k8s uses: resources (files and directories),
namespace, images, labels (metadata only), secretGenerator and configMapGenerator literals without
hash suffix,
strategic-merge patches of maps (by kind and name) and JSON 6902 patches (add / replace /
remove) with a target. Anything else in a kustomization.yaml raises, so a new feature cannot be
silently ignored by the tests. When `kubectl` is on the PATH the tests compare this rendering
with `kubectl kustomize`'s.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_KEYS = {
    "apiVersion", "kind", "resources", "namespace", "images", "labels", "secretGenerator", "configMapGenerator",
    "generatorOptions", "patches",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume"}


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """Every resource the kustomization in `directory` produces."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    unsupported = set(kustomization) - SUPPORTED_KEYS
    if unsupported:
        raise ValueError(f"{directory}: kustomize features the offline renderer does not know: {sorted(unsupported)}")
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        resources.extend(render(target) if target.is_dir() else load_documents(target))
    resources.extend(_generated_secrets(kustomization))
    resources.extend(_generated_config_maps(kustomization))
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, directory / patch["path"], patch.get("target"))
    for resource in resources:
        _apply_labels(resource, kustomization.get("labels", []))
        _apply_images(resource, kustomization.get("images", []))
        if "namespace" in kustomization and resource["kind"] not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = kustomization["namespace"]
    return resources


def _generated_secrets(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    if kustomization.get("secretGenerator") and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise ValueError("secretGenerator with name hashes is not rendered offline")
    secrets = []
    for generator in kustomization.get("secretGenerator", []):
        data = {}
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = base64.b64encode(value.encode()).decode()
        secrets.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": generator["name"]},
                        "type": "Opaque", "data": data})
    return secrets


def _generated_config_maps(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    if kustomization.get("configMapGenerator") and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise ValueError("configMapGenerator with name hashes is not rendered offline")
    config_maps = []
    for generator in kustomization.get("configMapGenerator", []):
        if set(generator) - {"name", "literals"}:
            raise ValueError(f"configMapGenerator {generator['name']}: only literals are rendered offline")
        data = dict(literal.partition("=")[::2] for literal in generator.get("literals", []))
        config_maps.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": generator["name"]}, "data": data})
    return config_maps


def _matches(resource: dict[str, Any], target: dict[str, Any]) -> bool:
    group, _, version = resource["apiVersion"].rpartition("/")
    return (
        resource["kind"] == target.get("kind", resource["kind"])
        and resource["metadata"]["name"] == target.get("name", resource["metadata"]["name"])
        and group == target.get("group", group)
        and version == target.get("version", version)
    )


def _apply_patch(resources: list[dict[str, Any]], path: Path, target: dict[str, Any] | None) -> None:
    body = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(body, list):  # JSON 6902
        if not target:
            raise ValueError(f"{path}: a JSON 6902 patch needs a target")
        matched = [r for r in resources if _matches(r, target)]
        for resource in matched:
            for operation in body:
                _json6902(resource, operation)
    else:  # strategic merge of maps, identified by kind and name
        matched = [r for r in resources if r["kind"] == body["kind"] and r["metadata"]["name"] == body["metadata"]["name"]]
        for resource in matched:
            _merge(resource, body)
    if not matched:
        raise ValueError(f"{path}: the patch matches no resource")


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list):
            raise ValueError(f"strategic merge of lists ({key}) is not rendered offline: use a JSON 6902 patch")
        else:
            into[key] = copy.deepcopy(value)


def _json6902(resource: dict[str, Any], operation: dict[str, Any]) -> None:
    steps = [step.replace("~1", "/").replace("~0", "~") for step in operation["path"].lstrip("/").split("/")]
    parent: Any = resource
    for step in steps[:-1]:
        parent = parent[int(step)] if isinstance(parent, list) else parent[step]
    last = steps[-1]
    key: Any = int(last) if isinstance(parent, list) and last != "-" else last
    op = operation["op"]
    if op == "replace":
        if isinstance(parent, dict) and key not in parent:
            raise ValueError(f"replace of a missing path {operation['path']}")
        parent[key] = copy.deepcopy(operation["value"])
    elif op == "add":
        if isinstance(parent, list):
            parent.append(copy.deepcopy(operation["value"])) if key == "-" else parent.insert(key, copy.deepcopy(operation["value"]))
        else:
            parent[key] = copy.deepcopy(operation["value"])
    elif op == "remove":
        del parent[key]
    else:
        raise ValueError(f"JSON 6902 op {op!r} is not rendered offline")


def _apply_labels(resource: dict[str, Any], labels: list[dict[str, Any]]) -> None:
    for entry in labels:
        if entry.get("includeSelectors") or entry.get("includeTemplates"):
            raise ValueError("labels on selectors or templates are not rendered offline")
        resource["metadata"].setdefault("labels", {}).update(entry["pairs"])


def _apply_images(resource: dict[str, Any], images: list[dict[str, Any]]) -> None:
    for container in pod_containers(resource):
        for image in images:
            name, _, _tag = container["image"].partition(":")
            if name == image["name"]:
                new_name = image.get("newName", name)
                new_tag = image.get("newTag", _tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def pod_spec(resource: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a workload (Deployment, StatefulSet, Job...), None for other kinds."""
    template = resource.get("spec", {}).get("template")
    return template.get("spec") if isinstance(template, dict) else None


def pod_containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(resource)
    if spec is None:
        return []
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))
