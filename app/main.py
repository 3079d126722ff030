"""FastAPI wiring: Metacontroller's hooks and the health endpoints. No decisions are made here."""

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from app.aws.ec2 import Ec2, ImageSource
from app.aws.image_index import IndexedImages, InMemory, Refresher
from app.aws.refreshed import NotInMemory
from app.core.build import LABEL_OWNER_UID
from app.core.children import prune
from app.core.decision import Decision, World
from app.core.effects import describe
from app.http import logs, openapi, reconcile
from app.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from app.http.metrics import AwsCalls, Metrics, counting_aws_calls, outcome_of
from app.model.hooks import (
    MAX_PROBLEMS,
    NOT_A_HOOK_REQUEST,
    CustomizeRequest,
    CustomizeResponse,
    FinalizeResponse,
    HookRequest,
    HookRequestError,
    RelatedResourceRule,
    SyncResponse,
)
from app.model.settings import Settings
from app.model.spec import PackerBuilderSpec, PackerBuilderStatus
from app.notify.channels import secret_rule
from app.notify.dispatch import Dispatcher, dispatcher_from
from app.notify.events import Event, verdict

log = logging.getLogger("app")

Clock = Callable[[], datetime]
# Well inside the pod's termination grace period.
SHUTDOWN_FLUSH_SECONDS = 5


def _utc_now() -> datetime:
    return datetime.now(UTC)


def status_json(status: PackerBuilderStatus) -> dict[str, Any]:
    """The status as written: complete, with no nulls or empty strings/lists/maps at any depth (rule 6; a
    channel that holds no AMI yet is its name alone), counts and falses stay. A condition is written whole:
    the CRD requires all five of its fields."""
    written = {}
    for key, value in status.model_dump(mode="json").items():
        kept = value if key == "conditions" else prune(value)
        if kept not in (None, "", [], {}):
            written[key] = kept
    return written


def _response(decision: Decision) -> dict[str, Any]:
    body: dict[str, Any] = {
        "status": status_json(decision.status),
        "children": list(decision.children),
        "resyncAfterSeconds": decision.resync_seconds,
    }
    if decision.finalized is not None:
        body["finalized"] = decision.finalized
    return body


def _answer(decision: Decision) -> Response:
    # Plain JSON values only (the status is dumped in JSON mode, Jobs are JSON already), so orjson writes
    # them: a fifth of the time pydantic's serializer of `Any` took for a 12 kB answer. The OpenAPI document
    # describes the bytes with SyncResponse / FinalizeResponse, which would re-add the empty status fields
    # if used to serialize.
    return Response(orjson.dumps(_response(decision)), media_type="application/json")


HOOK_PATHS = frozenset({"/sync", "/customize", "/finalize"})


def _problem(error: Any) -> str:
    loc = [str(p) for p in error["loc"] if p != "body"]
    if error.get("type") == "json_invalid":
        # loc is ("body", <character offset>); say so instead of "0: JSON decode error".
        reason = (error.get("ctx") or {}).get("error", error["msg"])
        return f"body: not JSON: {reason} at character {'.'.join(loc) or 0}"
    if error.get("type") == "missing" and not loc:
        return "body: empty; a hook request is a JSON object"
    return f"{'.'.join(loc) or 'body'}: {error['msg']}"


def _not_a_hook_request(problems: list[str]) -> JSONResponse:
    return JSONResponse(
        status_code=422, content={"error": NOT_A_HOOK_REQUEST, "problems": problems[:MAX_PROBLEMS]}
    )


async def _bad_request(_: Request, exc: RequestValidationError) -> Response:
    return _not_a_hook_request([_problem(e) for e in exc.errors()])


class Health(BaseModel):
    status: str


_REJECTED: dict[int | str, dict[str, Any]] = {
    422: {
        "model": HookRequestError,
        "description": "The body is not JSON (or not UTF-8), or not a hook request of this shape. Nothing was "
        "decided; Metacontroller retries with backoff.",
    }
}


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


class _OrjsonBodyRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            # orjson.JSONDecodeError is a json.JSONDecodeError, so a broken body (not UTF-8 included) gets
            # FastAPI's json_invalid error and our 422.
            self._json = orjson.loads(await self.body())
        return self._json


class OrjsonBodyRoute(APIRoute):
    """Hook bodies (15 kB and more with a Job and its Pod) parsed by orjson: half the time of json.loads,
    which FastAPI uses, on every sync."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def with_orjson(request: Request) -> Response:
            return await handler(_OrjsonBodyRequest(request.scope, request.receive))

        return with_orjson


def _observe(
    metrics: Metrics,
    hook: str,
    world: World,
    decision: Decision,
    calls: AwsCalls,
    started: float,
    now: datetime,
    events: Sequence[Event] = (),
) -> None:
    """Metrics and the one INFO line of an answer."""
    elapsed = time.monotonic() - started
    if hook == "sync":
        metrics.sync_duration.labels(outcome_of(decision)).observe(elapsed)
    else:
        metrics.finalize_duration.observe(elapsed)
    metrics.builder(world.meta.namespace, world.meta.name, decision, now)
    if hook == "sync":
        spec = world.spec if isinstance(world.spec, PackerBuilderSpec) else None
        validates = spec is not None and spec.validation is not None
        ended = verdict(world.status, decision.status)
        channels = None  # an invalid spec names none: the series stay as they were
        if spec is not None:
            channels = [c.name for c in spec.publish.channels] if spec.publish is not None else []
        metrics.transitions(world.meta.namespace, world.meta.name, events, validates, ended, channels)
    _log_answer(hook, world, decision, calls, elapsed)


def _log_answer(hook: str, world: World, decision: Decision, calls: AwsCalls, elapsed: float) -> None:
    """The one INFO line per answer: who, what was decided, what it cost. Names and ids only, no secrets."""
    live = {j.name for j in world.jobs if not j.deleting}
    wanted = [str(c["metadata"]["name"]) for c in decision.children]
    log.info(
        "%s %s/%s: %s",
        hook,
        world.meta.namespace,
        world.meta.name,
        decision.status.state or "-",
        extra={
            "fields": {
                "hook": hook,
                "namespace": world.meta.namespace,
                "name": world.meta.name,
                "uid": world.meta.uid,
                "generation": world.meta.generation,
                "state": decision.status.state,
                "jobs_kept": sorted(n for n in wanted if n in live),
                "jobs_created": sorted(n for n in wanted if n not in live),
                "effects": [describe(e) for e in decision.effects],
                "finalized": decision.finalized,
                "aws_calls": calls.count,
                "aws_calls_by_operation": calls.by_operation,
                "duration_ms": round(elapsed * 1000, 1),
            }
        },
    )


async def _synced(
    world: World, source: ImageSource, memory: InMemory | None, now: datetime, publish_prefix: str
) -> Decision:
    """Decided in the event loop when memory holds every fact (a steady builder: a worker thread's hop
    would cost more than the decision), in a worker thread when it needs AWS, which may be slow."""
    if memory is not None:
        try:
            return reconcile.sync(world, memory, now, publish_prefix)
        except NotInMemory:
            pass
    return await run_in_threadpool(reconcile.sync, world, source, now, publish_prefix)


def _image_source(
    settings: Settings, images: ImageSource | None, metrics: Metrics
) -> tuple[ImageSource, Refresher | None]:
    """The AWS side: the shared index over EC2 with its refresher, unless the caller brings its own source."""
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
    if isinstance(source, Ec2 | IndexedImages):
        source.instrument(metrics)
    return source, refresher


def _lifespan(
    refresher: Refresher | None, dispatcher: Dispatcher
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # What exists now (modules, pydantic schemas, boto3's service models) lives as long as the process:
        # out of the collector's way, a full collection scans only what requests left behind.
        gc.collect()
        gc.freeze()
        if refresher is not None:
            refresher.start()
        yield
        gc.unfreeze()
        if refresher is not None:
            await asyncio.to_thread(refresher.stop)
        # Only the sync that first sees a transition announces it: what is still queued now is lost for good.
        await asyncio.to_thread(dispatcher.flush, SHUTDOWN_FLUSH_SECONDS)

    return lifespan


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
    logs.configure(settings.log_level, settings.log_format, settings.access_log)
    metrics = Metrics()
    metrics.registry.register(dispatcher.counters)
    source, refresher = _image_source(settings, images, metrics)
    memory = source.in_memory() if isinstance(source, IndexedImages) else None

    examples = openapi.hook_examples()
    api = FastAPI(
        lifespan=_lifespan(refresher, dispatcher),
        docs_url=None,
        redoc_url=None,
        title="PackerBuilder hook",
        summary="Metacontroller CompositeController hooks that keep fresh, tagged AMIs built by Packer.",
        version="0.1.0",
    )
    api.router.route_class = OrjsonBodyRoute
    api.add_middleware(JsonHookBodies)
    openapi.install(api)

    api.exception_handler(RequestValidationError)(_bad_request)

    @api.post(
        "/sync",
        response_model=None,
        responses={200: {"model": SyncResponse, "description": "The Jobs and the status."}, **_REJECTED},
    )
    async def sync(
        request: Annotated[HookRequest, Body(openapi_examples=examples.sync)],
    ) -> Response:
        """Sync hook: the Jobs that must exist for this PackerBuilder and its status."""
        started = time.monotonic()
        now = clock()
        world = reconcile.world_of(request, settings.hook_image)
        with counting_aws_calls() as calls:
            decision = await _synced(world, source, memory, now, publish_prefix)
        decision, news = reconcile.announce(request, world, decision, now, fallback_slack_token)
        body = _answer(decision)
        # Queued, not sent: a slow or failing notifier never delays or fails the answer.
        dispatcher.submit(news.events, news.targets)
        _observe(metrics, "sync", world, decision, calls, started, now, news.events)
        return body

    @api.post(
        "/finalize",
        response_model=None,
        responses={
            200: {"model": FinalizeResponse, "description": "Whether the builder may go."},
            **_REJECTED,
        },
    )
    def finalize(
        request: Annotated[HookRequest, Body(openapi_examples=examples.finalize)],
    ) -> Response:
        """Finalize hook: `finalized: true` once no build is running and the last one's AMIs are tagged."""
        started = time.monotonic()
        now = clock()
        world = reconcile.world_of(request, settings.hook_image)
        with counting_aws_calls() as calls:
            decision = reconcile.finalize(world, source, now, publish_prefix)
        _observe(metrics, "finalize", world, decision, calls, started, now)
        return _answer(decision)

    @api.post("/customize", response_model_exclude_none=True, responses=_REJECTED)
    async def customize(
        request: Annotated[CustomizeRequest, Body(openapi_examples=examples.customize)],
    ) -> CustomizeResponse:
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

    @api.get("/healthz", response_model=Health)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "The AMI index is still being filled."}},
    )
    def readyz() -> Any:
        """Not ready until the AMI index's first fill has succeeded or failed: no sync meets a cold replica."""
        if refresher is not None and not refresher.ready.is_set():
            return JSONResponse(status_code=503, content={"status": "filling the AMI index"})
        return {"status": "ready"}

    @api.get("/metrics", response_class=PlainTextResponse)
    def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    return api


app = create_app()
