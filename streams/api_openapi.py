"""The OpenAPI 3.1 document of a worker's HTTP API, served at `/openapi.json`.

Built from dicts here, next to nothing else, so that shared shapes (the ATS body, nullable
fields) are written once. tests/integration/test_api_contract.py calls every path on a running
worker and validates the answers against these schemas; tests/unit/test_api_openapi.py checks that
every route the web server serves is documented here, and nothing more.
"""

from __future__ import annotations

import copy

INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
BOOL = {"type": "boolean"}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: dict, required: list[str] | None = None, extra: bool = False, **more) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties) if required is None else required,
            "additionalProperties": extra, **more}


def int_map(description: str) -> dict:
    return {"type": "object", "additionalProperties": INT, "description": description}


ATS_PROPERTIES = {
    "sku": {**STR, "description": "Master SKU"},
    "version": {**INT, "description": "Movements applied to this SKU so far"},
    "ats": {**INT, "description": "Available to sell: on hand - reserved - safety stock (down to -presale allowance)"},
    "sellable_on_hand": INT,
    "reserved": INT,
    "safety_stock": INT,
    "presale_allowance": INT,
    "locations": {"type": "object", "additionalProperties": ref("LocationStock"), "description": "Buckets per location"},
    "reserved_by_channel": int_map("Units ordered and not shipped, per channel <platform>:<shop_id>"),
}
HISTORY_POINT = {
    "type": "array",
    "prefixItems": [{**INT, "description": "epoch ms"}, {**INT, "description": "ATS"}, {**NUM, "description": "units sold per day"}],
    "minItems": 3, "maxItems": 3,
}
ALLOCATED_FROM = nullable(obj({"ats": INT, "ats_version": INT, "rule_version": nullable(INT)}))

SCHEMAS = {
    "Error": obj({"error": STR}, extra=True),
    "Health": obj({"status": {"const": "ok"}}),
    "Ready": obj(
        {"ready": BOOL, "reason": STR, "checks": obj({name: STR for name in ("assignment", "recovery", "catalog", "rules")})},
        required=["ready", "checks"],
    ),
    "LocationStock": obj({"on_hand": INT, "customs_hold": INT, "inspection": INT, "in_transit": INT}),
    "Ats": obj({**ATS_PROPERTIES, "as_of_ms": INT}, required=list(ATS_PROPERTIES)),
    "AtsListItem": obj(
        {**ATS_PROPERTIES, "allocated": int_map("Quantity published per channel"),
         "history": {"type": "array", "items": HISTORY_POINT, "description": "Recent points, oldest first (history=true)"}},
        required=[*ATS_PROPERTIES, "allocated"],
    ),
    "AtsList": obj({
        "items": {"type": "array", "items": ref("AtsListItem")},
        "total": {**nullable(INT), "description": "SKUs matching after `after`, before the limit; null when a worker "
                  "stopped reading at its per-request budget (STOCKSTREAM_API_LIST_SCAN_KEYS): page on with next_after"},
        "truncated": {**BOOL, "description": "More SKUs may match: ask again with after=next_after"},
        "next_after": {**nullable(STR), "description": "Pass as `after` for the next page; null on the last page"},
        "partitions": {"type": "array", "items": INT, "description": "Partitions answered for: all of them"},
    }),
    "AtsListPart": obj({"items": {"type": "array", "items": ref("AtsListItem")},
                        "total": {**INT, "description": "SKUs matching among those read"},
                        "complete": {**BOOL, "description": "The read reached the end: total is every match"},
                        "resume_after": {**nullable(STR), "description": "Complete up to this SKU; null: to the end"},
                        "partitions": {"type": "array", "items": INT}}),
    "ChannelAllocation": obj({
        "quantity": nullable(INT), "version": nullable(INT),
        "units_per_day": {**nullable(NUM), "description": "Sell-through as of the channel's last sale"},
        "last_sale_at_ms": nullable(INT),
    }),
    "Allocation": obj({
        "sku": STR, "ats": INT, "ats_version": INT, "allocated_from": ALLOCATED_FROM,
        "channels": {"type": "object", "additionalProperties": ref("ChannelAllocation")},
        "rules": {"type": "object", "description": "The allocation rules in force for the SKU"},
        "signals": {"type": "object", "description": "Active reallocation / replenishment signals"},
    }),
    "AllocationChange": obj({
        "sku": STR, "channel": STR, "quantity": INT, "previous_quantity": INT, "version": INT, "ats": INT,
        "ats_version": INT, "rule_version": INT, "mode": STR, "movement_ids": {"type": "array", "items": STR},
        "computed_at_ms": INT, "event_time_ms": nullable(INT),
    }),
    "Provenance": obj({
        "sku": STR, "channel": STR,
        "published": nullable(obj({"quantity": INT, "version": INT})),
        "ats": ref("Ats"),
        "allocated_from": ALLOCATED_FROM,
        "rule": obj({"version": INT, "mode": {"enum": ["shared", "split", "velocity"]},
                     "channel_rule": nullable({"type": "object"}), "channels": {"type": "array", "items": STR}}),
        "target": {**nullable(INT), "description": "What the rules in force give the channel now (before hysteresis)"},
        "units_per_day": nullable(NUM),
        "last_change": {**nullable(ref("AllocationChange")),
                        "description": "The allocations record that published this version, with its movement ids"},
        "explanation": STR,
    }),
    "AtRisk": obj({"sku": STR, "ats": INT, "units_per_day": NUM, "days_of_cover": NUM}),
    "RecentChange": obj({"sku": STR, "channel": STR, "quantity": INT, "previous_quantity": nullable(INT),
                         "version": INT, "at_ms": INT}),
    "SummaryPart": obj({
        "skus": INT, "at_risk": {"type": "array", "items": ref("AtRisk")}, "at_risk_total": INT,
        "recent_changes": {"type": "array", "items": ref("RecentChange")}, "partitions": {"type": "array", "items": INT},
        "read_at_ms": nullable(INT), "pending_partitions": {"type": "array", "items": INT},
    }),
    "Summary": obj({
        "skus": INT,
        "at_risk": {"type": "array", "items": ref("AtRisk"), "description": "Days of cover below lead time + safety days"},
        "at_risk_total": INT,
        "recent_changes": {"type": "array", "items": ref("RecentChange"), "description": "Newest first"},
        "partitions": {"type": "array", "items": INT},
        "read_at_ms": {**nullable(INT), "description": "When the oldest figures were read: the SKU count and at-risk "
                       "list come from a background sweep of each worker's stock table, repeated while summaries are asked for"},
        "pending_partitions": {"type": "array", "items": INT, "description": "Partitions whose first sweep after a "
                               "start or rebalance is not finished: skus and the at-risk list count what was read so far"},
        "quarantine_records": {**nullable(INT), "description": "Records held in the quarantine topic (null: broker did not answer)"},
        "dead_letter_records": {**nullable(INT), "description": "Records held in the channel dead-letter topic"},
        "at_ms": INT,
    }),
}


def json_response(schema_name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ref(schema_name)}}}


def error_response(description: str) -> dict:
    return json_response("Error", description)


def query(name: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def path_param(name: str, description: str, schema: dict = STR) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


SKU = path_param("sku", "Master SKU")
LIST_PARAMS = [
    query("channel", STR, "Only SKUs reserved or allocated on this channel (<platform>:<shop_id>)"),
    query("location", STR, "Only SKUs with stock records at this location"),
    query("below", INT, "Only SKUs whose ATS is below this"),
    query("q", STR, "Only SKUs whose id contains this (case-insensitive)"),
    query("limit", {**INT, "minimum": 1, "maximum": 1000, "default": 100}, "At most this many items (sorted by SKU)"),
    query("history", BOOL, "Add each SKU's recent (ms, ATS, units/day) points"),
    query("after", STR, "Only SKUs after this one: the previous page's next_after"),
]
PARTITIONS = query("partitions", STR, "Comma-separated partitions the caller expects this worker to own", required=True)
INTERNAL = "Internal: one worker's part of a scatter-gathered list query (only its own partitions)."

PATHS = {
    "/health": {"get": {"summary": "The process is alive", "responses": {"200": json_response("Health", "alive")}}},
    "/ready": {"get": {
        "summary": "Ready to serve: partitions assigned, tables recovered, catalog and rules loaded",
        "responses": {"200": json_response("Ready", "ready"), "503": json_response("Ready", "not ready, with the reason")},
    }},
    "/ats": {"get": {
        "summary": "ATS of many SKUs (scatter-gathered from every worker)",
        "parameters": LIST_PARAMS,
        "responses": {"200": json_response("AtsList", "matching SKUs, sorted by SKU"),
                      "400": error_response("a bad parameter"),
                      "503": error_response("some partition's owner could not answer (rebalance, recovery)")},
    }},
    "/ats/{sku}": {"get": {
        "summary": "ATS and every bucket of one SKU (routed to its owner)",
        "parameters": [SKU, query("as_of", STR, "A moment (ISO 8601 or epoch ms): rebuilt from the ledger by event time")],
        "responses": {"200": json_response("Ats", "the SKU's stock"), "400": error_response("a bad as_of"),
                      "404": error_response("no movement seen for the SKU")},
    }},
    "/allocations/{sku}": {"get": {
        "summary": "Published quantity per channel, sell-through and rules of one SKU (routed to its owner)",
        "parameters": [SKU],
        "responses": {"200": json_response("Allocation", "the SKU's allocation"),
                      "404": error_response("no movement seen for the SKU")},
    }},
    "/provenance/{sku}/{channel}": {"get": {
        "summary": "Why a channel shows its quantity (routed to the SKU's owner)",
        "parameters": [SKU, path_param("channel", "<platform>:<shop_id>")],
        "responses": {"200": json_response("Provenance", "the quantity, its version, the ATS behind it, the rule"),
                      "404": error_response("unknown SKU, or a channel neither allocated nor in the rules")},
    }},
    "/api/summary": {"get": {
        "summary": "Dashboard summary: SKU count, SKUs at risk, latest allocation changes, quarantine and dead letters",
        "responses": {"200": json_response("Summary", "the summary"),
                      "503": error_response("some partition's owner could not answer")},
    }},
    "/internal/ats": {"get": {
        "summary": INTERNAL, "parameters": [*LIST_PARAMS, PARTITIONS],
        "responses": {"200": json_response("AtsListPart", "this worker's part"), "400": error_response("bad parameters"),
                      "503": error_response("this worker is recovering its tables")},
    }},
    "/internal/summary": {"get": {
        "summary": INTERNAL,
        "parameters": [query("at_ms", INT, "The moment rates are evaluated at (the asking worker's clock)", required=True),
                       PARTITIONS],
        "responses": {"200": json_response("SummaryPart", "this worker's part"), "400": error_response("bad parameters"),
                      "503": error_response("this worker is recovering its tables")},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics (text exposition format 0.0.4)",
        "responses": {"200": {"description": "metrics", "content": {"text/plain": {"schema": STR}}}},
    }},
    "/openapi.json": {"get": {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
    "/": {"get": {
        "summary": "The live dashboard",
        "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": STR}}}},
    }},
    "/dashboard/{asset}": {"get": {
        "summary": "The dashboard's script and style sheet",
        "parameters": [path_param("asset", "file name", {"enum": ["index.html", "app.js", "style.css"]})],
        "responses": {
            "200": {"description": "the file", "content": {"text/javascript": {"schema": STR}, "text/css": {"schema": STR},
                                                             "text/html": {"schema": STR}}},
            "404": error_response("no such asset"),
        },
    }},
}

DOCUMENT = {
    "openapi": "3.1.0",
    "info": {
        "title": "stockstream worker API",
        "version": "1",
        "description": "Available-to-sell stock, allocation and provenance per master SKU. Every worker answers "
                       "every query the same: SKU lookups are routed to the owner of the SKU's partition, list "
                       "queries are gathered from the owners of all partitions.",
    },
    "paths": PATHS,
    "components": {"schemas": SCHEMAS},
}


def document() -> dict:
    return copy.deepcopy(DOCUMENT)
