"""The OpenAPI document says what the service does: schemathesis drives the app with requests generated from
its own /openapi.json and fails on any 5xx, undocumented status code or content type, or answer that does not
match its documented schema. /docs and /redoc work with no network: every asset is served by the app.

No AWS: EC2 is a small in-memory stand-in and the notifier sends nothing.
"""

import copy
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from app.http.openapi import REPO, hook_examples
from app.main import create_app
from app.model.hooks import NOT_A_HOOK_REQUEST, FinalizeResponse, HookRequestError, SyncResponse
from app.model.settings import Settings
from app.model.tags import Image
from app.notify.dispatch import Dispatcher
from app.notify.events import Event
from app.notify.targets import Target
from tests.builders import T0, managed_image, parent, request
from tests.fakes.ec2 import QuietEc2
from tests.seed import SEED_SPEC

# Not negative_data_rejection: the document describes the Jobs and Pods Metacontroller sends in more detail
# than the hook checks (it tolerates what it does not read, by design), so a Pod with `kind: 0` is accepted.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
]
HOOKS = ("/sync", "/finalize", "/customize")
SYNC_REQUEST = REPO / "metacontroller" / "examples" / "sync-request.json"


class Unsent(Dispatcher):
    """A notifier that sends nothing: fuzzed specs name every kind of notification target."""

    def submit(self, events: Sequence[Event], targets: Sequence[Target]) -> None:
        return None


def _app() -> FastAPI:
    return create_app(Settings(), images=QuietEc2(), clock=lambda: T0, notifier=Unsent({}))


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return _app()


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


# Loaded at collection, one test per operation. (schemathesis.pytest.from_fixture reaches into a private
# attribute that pytest 9 no longer has.)
schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_app_answers_as_its_openapi_document_says(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=CHECKS)


# --- what the document says -----------------------------------------------------------------------------


def test_every_hook_documents_its_answer_and_the_real_422(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    answers = {"/sync": "SyncResponse", "/finalize": "FinalizeResponse", "/customize": "CustomizeResponse"}
    for path, model in answers.items():
        responses = document["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "422"}, path
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{model}")
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/HookRequestError")
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert "finalized" not in schemas["SyncResponse"]["properties"]
    assert "finalized" in schemas["FinalizeResponse"]["required"]


def test_request_examples_are_the_saved_requests(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    def examples(path: str) -> dict[str, Any]:
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
        return {name: example["value"] for name, example in body["examples"].items()}

    sync_request = json.loads((REPO / "metacontroller/examples/sync-request.json").read_text())
    customize_request = json.loads((REPO / "metacontroller/examples/customize-request.json").read_text())
    assert examples("/sync")["metacontroller/examples/sync-request.json"] == sync_request
    assert examples("/customize")["metacontroller/examples/customize-request.json"] == customize_request
    saved = {p.relative_to(REPO).as_posix() for p in (REPO / "examples").glob("*.json")}
    assert saved <= set(examples("/sync")) | set(examples("/finalize")) | set(examples("/customize"))
    assert all(value.get("finalizing") is True for value in examples("/finalize").values())
    assert examples("/finalize")


@pytest.mark.parametrize("path", HOOKS)
def test_each_example_gets_its_documented_answer(client: TestClient, path: str) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    for name, example in body["examples"].items():
        response = client.post(path, json=example["value"])
        assert response.status_code == 200, (name, response.text)
        if path == "/sync":
            SyncResponse.model_validate(response.json())
        if path == "/finalize":
            FinalizeResponse.model_validate(response.json())


def test_an_example_that_cannot_be_read_is_left_out_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = json.loads((REPO / "metacontroller/examples/sync-request.json").read_text())
    (tmp_path / "sync-good.json").write_text(json.dumps(good))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "latin1.json").write_bytes(b'{"parent": "\xff"}')
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "not-a-request.json").write_text('{"parent": {"metadata": {}}}')
    (tmp_path / "finalize-good.json").write_text(json.dumps(good | {"finalizing": True}))
    with caplog.at_level(logging.WARNING, logger="app.http.openapi"):
        found = hook_examples([tmp_path, tmp_path / "missing"], root=tmp_path)
    assert set(found.sync) == {"sync-good.json"}
    assert set(found.finalize) == {"finalize-good.json"}
    assert found.customize == {}
    left_out = " ".join(r.getMessage() for r in caplog.records)
    for name in ("broken.json", "latin1.json", "list.json", "not-a-request.json"):
        assert name in left_out


def test_the_app_starts_without_any_example_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The container image ships app/ only: the document then has no examples, and everything else works."""
    monkeypatch.setattr("app.http.openapi.EXAMPLE_DIRS", (tmp_path / "nowhere",))
    with TestClient(_app()) as client:
        document = client.get("/openapi.json").json()
        body = document["paths"]["/sync"]["post"]["requestBody"]["content"]["application/json"]
        assert not body.get("examples")
        assert client.get("/docs").status_code == 200
        assert client.post("/sync", json=json.loads(SYNC_REQUEST.read_text())).status_code == 200


# --- the 422, whatever is wrong with the body -------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b'{"parent": ',
        b"\x80",  # not UTF-8: FastAPI's own answer would be a 400 {"detail": ...}
        b'{"parent": "\xff"}',
        b"[]",
        b'{"parent": {"metadata": {"name": "b", "generation": false}}}',
    ],
)
@pytest.mark.parametrize("path", HOOKS)
def test_a_body_that_is_not_a_hook_request_gets_the_documented_422(
    client: TestClient, path: str, raw: bytes
) -> None:
    response = client.post(path, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    answer = HookRequestError.model_validate(response.json())
    assert answer.error == NOT_A_HOOK_REQUEST
    if raw == b"":
        assert answer.problems == ["body: empty; a hook request is a JSON object"]
    elif raw[:1] not in (b"[", b"{") or raw == b'{"parent": ' or b"\xff" in raw:
        assert any(p.startswith("body: not JSON") for p in answer.problems), answer


def test_other_http_errors_keep_their_usual_shape(client: TestClient) -> None:
    assert client.get("/nowhere").json() == {"detail": "Not Found"}
    assert client.get("/sync").status_code == 405


# --- /docs and /redoc with no network -----------------------------------------------------------------

ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")
EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_only_assets_the_app_serves(client: TestClient, page: str) -> None:
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "fonts.googleapis.com", "validator.swagger.io"):
        assert cdn not in html
    urls = {a or b for a, b in ASSET.findall(html)}
    assert urls, html
    assert all(url.startswith("/") and not url.startswith("//") for url in urls), urls
    assets = {u for u in urls if u.endswith((".js", ".css", ".png"))}
    assert any(u.endswith(".js") for u in assets)
    if page == "/docs":
        assert any(u.endswith(".css") for u in assets)
        assert "/openapi.json" in urls
    for url in assets:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert EXPECTED_TYPES[Path(url).suffix] in asset.headers["content-type"], (url, asset.headers)
        assert len(asset.content) > 1000, url


def test_docs_honour_a_root_path_prefix() -> None:
    with TestClient(_app(), root_path="/hook") as client:
        html = client.get("/docs").text
    assert "/hook/docs-assets/swagger-ui-bundle.js" in html
    assert "/hook/openapi.json" in html


# --- found by the fuzzing above ------------------------------------------------------------------------------


class OneAmi(QuietEc2):
    """EC2 holding one AMI of the builder, built a day ago."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        return [managed_image("ami-0123456789abcdef0", T0 - timedelta(days=1), spec=self.spec)]


@pytest.mark.parametrize(("expires_in", "with_ami"), [("1000000000d", False), ("999999999d", True)])
def test_an_absurd_duration_is_an_invalid_spec_not_a_500(expires_in: str, with_ami: bool) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    spec.setdefault("timeOuts", {})["expiresIn"] = expires_in
    images = OneAmi(spec) if with_ami else QuietEc2()
    app = create_app(Settings(), images=images, clock=lambda: T0, notifier=Unsent({}))
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/sync", json=request(parent(spec)))
    assert response.status_code == 200
    assert response.json()["status"]["state"] == "InvalidSpec"
