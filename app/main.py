"""FastAPI wiring: Metacontroller's hooks and the health endpoints. No decisions are made here."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app import reconcile
from app.build import LABEL_OWNER_UID
from app.decide import Decision
from app.ec2 import Ec2, ImageSource
from app.hooks import CustomizeRequest, CustomizeResponse, HookRequest, RelatedResourceRule
from app.image_index import IndexedImages, Refresher
from app.notify.channels import dispatcher_from
from app.notify.dispatch import Dispatcher
from app.notify.targets import secret_rule
from app.settings import Settings
from app.spec import PackerBuilderStatus

log = logging.getLogger("app")

Clock = Callable[[], datetime]
# Well inside the pod's termination grace period.
SHUTDOWN_FLUSH_SECONDS = 5


def _utc_now() -> datetime:
    return datetime.now(UTC)


def status_json(status: PackerBuilderStatus) -> dict[str, Any]:
    """The status as written: complete, with no nulls or empty strings/lists (counts stay, even 0)."""
    dumped = status.model_dump(mode="json")
    return {k: v for k, v in dumped.items() if v not in (None, "", [])}


def _response(decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": status_json(decision.status),
        "children": list(decision.children),
        "resyncAfterSeconds": decision.resync_seconds,
    }
    if decision.finalized is not None:
        body["finalized"] = decision.finalized
    return body


HOOK_PATHS = frozenset({"/sync", "/customize", "/finalize"})


class JsonHookBodies:
    """Read hook bodies as JSON whatever their Content-Type.

    `curl -d @request.json` (the way people debug a hook) sends form encoding, and FastAPI would then
    reject a perfectly good JSON body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in HOOK_PATHS:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    images: ImageSource | None = None,
    clock: Clock = _utc_now,
    notifier: Dispatcher | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    fallback_slack_token = settings.slack_bot_token
    publish_prefix = settings.publish_parameter_prefix
    dispatcher = notifier or dispatcher_from(settings)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    source: ImageSource
    refresher: Refresher | None = None
    if images is None:
        ec2 = Ec2(
            connect_timeout=settings.aws_connect_timeout,
            read_timeout=settings.aws_read_timeout,
            max_attempts=settings.aws_max_attempts,
        )
        indexed = IndexedImages(
            ec2,
            period=settings.index_refresh_seconds,
            base_period=settings.base_image_cache_seconds,
            stale_after=settings.index_stale_after_seconds,
        )
        tick = max(1.0, min(settings.index_refresh_seconds, settings.base_image_cache_seconds) / 4)
        source, refresher = indexed, Refresher(indexed, settings.index_regions, tick)
    else:
        source = images

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if refresher is not None:
            refresher.start()
        yield
        if refresher is not None:
            await asyncio.to_thread(refresher.stop)
        # Only the sync that first sees a transition announces it: what is still queued now is lost for good.
        await asyncio.to_thread(dispatcher.flush, SHUTDOWN_FLUSH_SECONDS)

    api = FastAPI(
        lifespan=lifespan,
        title="PackerBuilder hook",
        summary="Metacontroller CompositeController hooks that keep fresh, tagged AMIs built by Packer.",
        version="0.1.0",
    )
    api.add_middleware(JsonHookBodies)

    @api.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
        ]
        return JSONResponse(
            status_code=422,
            content={"error": "not a Metacontroller hook request", "problems": problems[:10]},
        )

    @api.post("/sync")
    def sync(request: HookRequest) -> dict[str, Any]:
        """Sync hook: the Jobs that must exist for this PackerBuilder and its status."""
        now = clock()
        world = reconcile.world_of(request)
        decision = reconcile.sync(world, source, now, publish_prefix)
        decision, news = reconcile.announce(request, world, decision, now, fallback_slack_token)
        body = _response(decision)
        # Queued, not sent: a slow or failing notifier never delays or fails the answer.
        dispatcher.submit(news.events, news.targets)
        return body

    @api.post("/finalize")
    def finalize(request: HookRequest) -> dict[str, Any]:
        """Finalize hook: `finalized: true` once no build is running and the last one's AMIs are tagged."""
        return _response(reconcile.finalize(request, source, clock(), publish_prefix))

    @api.post("/customize", response_model_exclude_none=True)
    def customize(request: CustomizeRequest) -> CustomizeResponse:
        """Customize hook: the Pods of this builder's Jobs (the AMI they report) and the notifier's Secrets."""
        meta = request.parent.metadata
        pods = RelatedResourceRule(
            apiVersion="v1",
            resource="pods",
            namespace=meta.namespace,
            labelSelector={"matchLabels": {LABEL_OWNER_UID: meta.uid}},
        )
        secrets = secret_rule(meta.namespace, request.parent.spec)
        return CustomizeResponse(relatedResources=[pods] if secrets is None else [pods, secrets])

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz", response_model=None)
    def readyz() -> dict[str, str] | JSONResponse:
        """Not ready until the AMI index's first fill has succeeded or failed: no sync meets a cold replica."""
        if refresher is not None and not refresher.ready.is_set():
            return JSONResponse(status_code=503, content={"status": "filling the AMI index"})
        return {"status": "ready"}

    @api.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            dispatcher.counters.prometheus(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    return api


app = create_app()
