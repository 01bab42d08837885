"""The REST API matches its OpenAPI document: every documented path is called on a running worker
(real broker), every answer's status and content type are documented and its JSON body validates
against the documented schema (JSON Schema 2020-12, what OpenAPI 3.1 uses)."""

from __future__ import annotations

import re
import time
import urllib.parse

import pytest
from confluent_kafka import Producer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec

from stockstream.process import WorkerProcess
from stockstream.topics import raw_topic
from streams.api_openapi import document
from tests.support.api_client import JD, TMALL, call, get_json, stock_up, wait_for_json, wait_until_ready, with_two_shops
from tests.support.ats import wait_for_expected

pytestmark = pytest.mark.integration

SKUS = [f"SKU-{i:03d}" for i in range(8)]


def quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")


def operation_for(doc: dict, path: str) -> tuple[str, dict]:
    """The documented path template matching a concrete request path, and its GET operation."""
    for template, item in doc["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template, item["get"]
    raise AssertionError(f"{path} matches no documented path")


def check_against_document(doc: dict, path_and_query: str, status: int, content_type: str, body: bytes) -> str:
    path = urllib.parse.urlsplit(path_and_query).path
    template, operation = operation_for(doc, path)
    responses = operation["responses"]
    assert str(status) in responses, f"GET {path_and_query} answered {status}, documented: {sorted(responses)}"
    media = content_type.split(";")[0].strip()
    documented = responses[str(status)]["content"]
    assert media in documented, f"GET {path_and_query}: {media} not among {sorted(documented)}"
    if media == "application/json":
        import json

        schema = {**documented[media]["schema"], "components": doc["components"]}
        errors = sorted(Draft202012Validator(schema).iter_errors(json.loads(body)), key=str)
        assert not errors, f"GET {path_and_query} ({status}) does not match its schema: {errors[0]}"
    return template


def test_every_documented_path_answers_as_documented(settings):
    settings = with_two_shops(settings)
    traffic = stock_up(settings, SKUS, orders=300)
    # One record the normalizer cannot parse: the summary must count it in quarantine.
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    producer.produce(settings.topic(raw_topic("tmall")), key=b"broken", value=b"{not json",
                     headers=[("platform", b"tmall"), ("shop", b"tmall-flagship"), ("kind", b"tmc")])
    assert producer.flush(30) == 0

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        ready = wait_until_ready(worker)
        assert ready == {"ready": True, "checks": {"assignment": "ok", "recovery": "ok", "catalog": "ok", "rules": "ok"}}
        wrong = wait_for_expected(worker, SKUS, traffic.truth.ats, timeout=60)
        assert not wrong, f"ATS differs from ground truth: {wrong}\n{worker.log_tail()}"
        wait_for_json(worker, "/api/summary", lambda s: s["quarantine_records"] >= 1 and s["skus"] == len(SKUS))
        wait_for_json(worker, f"/allocations/{SKUS[0]}", lambda a: set(a["channels"]) >= {TMALL, JD})
        # History is sampled from the stock table's writes once a second (streams/api_history.py):
        # a worker that processed everything within one second has no points until the next tick.
        history = f"/ats?channel={quote(TMALL)}&location=main&below=100000&q=sku-00&limit=3&history=true"
        wait_for_json(worker, history, lambda a: any(item["history"] for item in a["items"]))

        doc = get_json(worker, "/openapi.json")[1]
        validate_spec(doc)
        assert doc == document()

        now_ms = int(time.time() * 1000)
        calls = [
            ("/health", 200), ("/ready", 200),
            ("/ats", 200), (history, 200),
            ("/ats?limit=0", 400), ("/ats?below=many", 400),
            (f"/ats/{SKUS[0]}", 200), (f"/ats/{SKUS[0]}?as_of={now_ms}", 200), (f"/ats/{SKUS[0]}?as_of=yesterday", 400),
            ("/ats/NO-SUCH-SKU", 404),
            (f"/allocations/{SKUS[0]}", 200), ("/allocations/NO-SUCH-SKU", 404),
            (f"/provenance/{SKUS[0]}/{quote(TMALL)}", 200), (f"/provenance/{SKUS[0]}/{quote('pdd:nobody')}", 404),
            (f"/provenance/NO-SUCH-SKU/{quote(TMALL)}", 404),
            ("/api/summary", 200),
            ("/internal/ats?partitions=0,1,2,3&history=true", 200), ("/internal/ats?partitions=zero", 400),
            (f"/internal/summary?at_ms={now_ms}&partitions=0,1,2,3", 200), ("/internal/summary", 400),
            ("/metrics", 200), ("/openapi.json", 200), ("/", 200),
            ("/dashboard/app.js", 200), ("/dashboard/style.css", 200), ("/dashboard/index.html", 200),
            ("/dashboard/secrets.txt", 404),
        ]
        exercised = set()
        bodies = {}
        for path, expected_status in calls:
            answer = call(worker, path)
            assert answer.status == expected_status, f"GET {path}: {answer.status} {answer.body[:300]!r}"
            exercised.add(check_against_document(doc, path, answer.status, answer.content_type, answer.body))
            bodies[path] = answer
        assert exercised == set(doc["paths"]), f"documented but not called: {set(doc['paths']) - exercised}"

        # A few facts beyond the shapes.
        listed = bodies["/ats"].json()
        assert [item["sku"] for item in listed["items"]] == SKUS and listed["partitions"] == [0, 1, 2, 3]
        assert {item["sku"]: item["ats"] for item in listed["items"]} == {sku: traffic.truth.ats(sku) for sku in SKUS}
        filtered = bodies[history].json()
        assert len(filtered["items"]) == 3 and filtered["total"] == len(SKUS) and filtered["truncated"]
        # Sampled at a bounded rate: under load not every SKU has points yet, but some must.
        assert any(item["history"] for item in filtered["items"]), "the worker keeps recent points of the SKUs it owns"
        provenance = bodies[f"/provenance/{SKUS[0]}/{quote(TMALL)}"].json()
        allocation = bodies[f"/allocations/{SKUS[0]}"].json()
        assert provenance["published"]["quantity"] == allocation["channels"][TMALL]["quantity"]
        assert provenance["ats"]["ats"] == traffic.truth.ats(SKUS[0])
        assert provenance["last_change"] is not None and provenance["last_change"]["movement_ids"]
        assert f"{TMALL} shows {provenance['published']['quantity']}" in provenance["explanation"]
        assert b"stockstream_ats_updates_total" in bodies["/metrics"].body
        assert b"<title>stockstream" in bodies["/"].body
    finally:
        worker.stop()
