"""The OpenAPI document is valid OpenAPI 3.1, and documents exactly the routes the worker's web
server serves (Faust's own built-in pages included, so switching one on fails here)."""

from __future__ import annotations

from openapi_spec_validator import validate

from stockstream.settings import Settings
from streams.api import route_paths
from streams.api_openapi import document
from streams.app import create_app


def test_document_is_valid_openapi_3_1():
    doc = document()
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_served_route_is_documented_and_every_documented_one_served(tmp_path):
    pipeline = create_app(Settings(data_dir=tmp_path / "data"))
    web = pipeline.app.web
    web.init_server()  # adds Faust's blueprints, as starting the server does
    served = route_paths(pipeline.app)
    assert served == set(document()["paths"])
    assert not any(path.startswith(("/router", "/table")) for path in served)
