"""What /openapi.json and /docs add to FastAPI's defaults.

- Request examples are the repository's saved hook requests (`metacontroller/examples/*.json`,
  `examples/*.json`), read once when the app is created. They are documentation, so loading is tolerant: a
  missing folder (the container image ships only `app/`), an unreadable file or one that is not a valid hook
  request is left out with a warning and never stops the service.
- The parent's `spec` and `status` are documented with the PackerBuilder's own schemas; the hook reads them
  leniently (an invalid spec is a status condition, not a 422), which the document says too.
- /docs (Swagger UI) and /redoc load their JavaScript and CSS from the `fastapi-offline` package installed with
  the service, never from a CDN, so they work offline and in air-gapped clusters.
"""

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.models import Example
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from app.model.hooks import CustomizeRequest, HookRequest
from app.model.spec import PackerBuilderSpec

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_DIRS = (REPO / "metacontroller" / "examples", REPO / "examples")

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
SWAGGER_JS = "swagger-ui-bundle.js"
SWAGGER_CSS = "swagger-ui.css"
REDOC_JS = "redoc.standalone.js"
FAVICON = "favicon.png"
# No badge from validator.swagger.io: the page must not reach out of the cluster.
SWAGGER_UI_PARAMETERS: dict[str, Any] = {"validatorUrl": None, "tryItOutEnabled": True}


@dataclass(frozen=True)
class HookExamples:
    """OpenAPI `examples` per hook, keyed by the file's path in the repository."""

    sync: dict[str, Example] = field(default_factory=dict)
    finalize: dict[str, Example] = field(default_factory=dict)
    customize: dict[str, Example] = field(default_factory=dict)


def _hook_of(path: Path, body: Mapping[str, Any]) -> str:
    if "customize" in path.stem:
        return "customize"
    if "finalize" in path.stem or body.get("finalizing") is True:
        return "finalize"
    return "sync"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        body = json.loads(path.read_bytes())
    except (OSError, ValueError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        log.warning("example %s left out of the OpenAPI document: %s", path.name, error)
        return None
    if not isinstance(body, dict):
        log.warning("example %s left out of the OpenAPI document: not a JSON object", path.name)
        return None
    return body


def hook_examples(dirs: Iterable[Path] | None = None, root: Path = REPO) -> HookExamples:
    """The saved requests in `dirs` (EXAMPLE_DIRS) that the hooks accept, as OpenAPI examples per hook."""
    found = HookExamples()
    for folder in EXAMPLE_DIRS if dirs is None else dirs:
        try:
            files = sorted(folder.glob("*.json"))
        except OSError as error:
            log.warning("examples in %s left out of the OpenAPI document: %s", folder, error)
            continue
        for path in files:
            body = _read(path)
            if body is None:
                continue
            hook = _hook_of(path, body)
            try:
                (CustomizeRequest if hook == "customize" else HookRequest).model_validate(body)
            except ValidationError as error:
                log.warning(
                    "example %s left out of the OpenAPI document: not a %s request (%d problems)",
                    path.name,
                    hook,
                    error.error_count(),
                )
                continue
            name = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
            example = Example(summary=name, value=body)
            getattr(found, hook)[name] = example
    if not found.finalize:
        # Metacontroller's finalize call is its sync call with `finalizing: true`.
        for name, example in found.sync.items():
            value = dict(example.get("value") or {}) | {"finalizing": True}
            found.finalize[name] = Example(summary=f"{name}, finalizing", value=value)
    return found


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


REF = "#/components/schemas/{model}"
PARENT_SPEC = (
    "The PackerBuilder's spec. Checked by the hook, not as part of the request: a spec that does not match this "
    "schema is answered 200 with an InvalidSpec condition naming the field, not with a 422."
)
PARENT_STATUS = "The status the hook last wrote; a field it cannot read is ignored, never a 422."


def install(api: FastAPI) -> None:
    """The document's additions and the offline docs pages; create the app with docs_url and redoc_url None."""
    _describe_parent(api)
    _serve_docs(api)


def _describe_parent(api: FastAPI) -> None:
    build = api.openapi

    def document() -> dict[str, Any]:
        if api.openapi_schema is None:
            schemas = build().setdefault("components", {}).setdefault("schemas", {})
            spec = PackerBuilderSpec.model_json_schema(ref_template=REF)
            for name, schema in {**spec.pop("$defs", {}), "PackerBuilderSpec": spec}.items():
                schemas.setdefault(name, schema)
            parent = schemas.get("Parent", {}).get("properties", {})
            if "spec" in parent:
                parent["spec"] = {"anyOf": [{"$ref": REF.format(model="PackerBuilderSpec")}, {}]}
                parent["spec"]["description"] = PARENT_SPEC
            if "status" in parent and "PackerBuilderStatus" in schemas:
                parent["status"] = {"anyOf": [{"$ref": REF.format(model="PackerBuilderStatus")}, {}]}
                parent["status"]["description"] = PARENT_STATUS
        return api.openapi_schema or build()

    api.openapi = document  # type: ignore[method-assign]


def _serve_docs(api: FastAPI) -> None:
    """Swagger UI on /docs and ReDoc on /redoc from the packaged assets."""
    api.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = api.openapi_url or "/openapi.json"

    @api.get(DOCS_URL, include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_URL}/{SWAGGER_JS}",
            swagger_css_url=f"{root}{ASSETS_URL}/{SWAGGER_CSS}",
            swagger_favicon_url=f"{root}{ASSETS_URL}/{FAVICON}",
            oauth2_redirect_url=None,
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )

    @api.get(REDOC_URL, include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = _root(request)
        return get_redoc_html(
            openapi_url=root + openapi_url,
            title=f"{api.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/{REDOC_JS}",
            redoc_favicon_url=f"{root}{ASSETS_URL}/{FAVICON}",
            with_google_fonts=False,
        )
