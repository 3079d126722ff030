"""The hook with its real shared AMI index (no `images=`), over real HTTP, against moto behind a counting proxy.

AWS calls are counted on the wire by tests.fakes.aws_proxy, which can also hold, delay or fail them. Waits
are bounded by deadlines and end on what the proxy or the hook reports, never on a sleep.
"""

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.main import create_app
from app.model.settings import Settings
from app.model.spec import parse_spec
from app.model.tags import Owner, format_timestamp
from tests.aws import REGION, ec2_client, free_port, register_built_ami
from tests.builders import NAME, NAMESPACE, build_pod, parent, request, running, succeeded
from tests.fakes.aws_proxy import ALL, AwsProxy
from tests.http import post, serve
from tests.seed import SEED_SPEC

DEADLINE = 30.0
REFRESHER = "ami-index-refresher"
# Loopback only: a proxy from the environment must not get in the way.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# No background refresh falls inside a counted window: call counts are the requests' own.
QUIET: dict[str, Any] = {
    "index_refresh_seconds": 3600.0,
    "base_image_cache_seconds": 3600.0,
    "index_stale_after_seconds": 3600.0,
}


@pytest.fixture
def proxy(ec2_env: str) -> Iterator[AwsProxy]:
    with AwsProxy(ec2_env).running() as running:
        yield running


def until(check: Callable[[], Any], what: str) -> Any:
    """The first truthy value of `check`, polled until the deadline."""
    deadline = time.monotonic() + DEADLINE
    while not (value := check()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)
    return value


def readyz(url: str) -> int:
    try:
        with _DIRECT.open(f"{url}/readyz", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@contextmanager
def hook(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, *, ready: bool = True, **settings: Any
) -> Iterator[str]:
    """The hook on `endpoint` (boto3 reads it when the first fill makes the client); its refresher stops at exit."""
    before = {t for t in threading.enumerate() if t.name == REFRESHER}
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", endpoint)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", endpoint)
    with serve(create_app(Settings(index_regions=(REGION,), **settings))) as url:
        if ready:
            until(lambda: readyz(url) == 200, "/readyz to say ready")
        yield url
    assert not {t for t in threading.enumerate() if t.name == REFRESHER} - before, "refresher still running"


def sync(url: str, body: dict[str, Any]) -> dict[str, Any]:
    code, answer = post(f"{url}/sync", body)
    assert code == 200, answer
    return dict(answer)


def condition(answer: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in answer["status"].get("conditions", []) if c["type"] == kind), None)


def is_ready(answer: dict[str, Any]) -> bool:
    ready = condition(answer, "Ready")
    return ready is not None and ready["status"] == "True"


def active_ami(ec2_url: str, name: str) -> str:
    """An active AMI of builder `name` made moments ago, as a finished, recorded build leaves it."""
    tags = {
        **Owner.of(NAMESPACE, name, parse_spec(SEED_SPEC)).tags,
        "status": "active",
        "create-timestamp": format_timestamp(datetime.now(UTC)),
    }
    return register_built_ami(ec2_client(ec2_url), f"{name}-ami", tags=tags)


def warm(url: str, name: str = NAME) -> dict[str, Any]:
    """A builder's first sync (it records its AMI) and its status as Metacontroller then stores it."""
    answer = sync(url, request(parent(name=name)))
    assert is_ready(answer), answer["status"]
    return dict(answer["status"])


def asked_for(forms: list[dict[str, list[str]]], name: str) -> bool:
    """Whether one of these DescribeImages selected the AMIs of builder `name` (its created-by tag)."""
    for form in forms:
        filters = [
            k[: -len(".Name")] for k, v in form.items() if k.endswith(".Name") and v == ["tag:created-by"]
        ]
        if any(form.get(f"{prefix}.Value.1") == [name] for prefix in filters):
            return True
    return False


# -- readiness --------------------------------------------------------------------------------------------


def test_readyz_says_not_ready_until_the_first_fill_is_done(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy
) -> None:
    proxy.hold()
    # A read timeout longer than the deadline: the fill ends when the test releases it, not on its own.
    with hook(monkeypatch, proxy.url, ready=False, aws_read_timeout=DEADLINE * 2) as url:
        try:
            until(lambda: proxy.calls("DescribeImages"), "the first fill to reach EC2")
            assert readyz(url) == 503
        finally:
            proxy.release()
        until(lambda: readyz(url) == 200, "/readyz to say ready once the fill is done")
        assert proxy.failed("DescribeImages") == 0


@pytest.mark.parametrize("outage", ["503", "unreachable"])
def test_readyz_says_ready_once_the_first_fill_failed(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, outage: str
) -> None:
    proxy.failing = frozenset({ALL})
    endpoint = proxy.url if outage == "503" else f"http://127.0.0.1:{free_port()}"
    with hook(monkeypatch, endpoint, ready=False) as url:
        until(lambda: readyz(url) == 200, "/readyz to say ready after a failed fill")
        if outage == "503":
            assert proxy.failed("DescribeImages") >= 1
        # The region is filled again by the next sync that needs it; it fails the same way, as an answer.
        answer = sync(url, request(parent()))
        assert condition(answer, "AWSError") is not None
        assert answer["children"] == []


# -- cheap when nothing happens ----------------------------------------------------------------------------


def test_a_warm_resync_of_many_ready_builders_makes_no_aws_call(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    names = [f"builder-{i:02d}" for i in range(20)]
    amis = {name: active_ami(ec2_env, name) for name in names}
    with hook(monkeypatch, proxy.url, **QUIET) as url:
        statuses = {name: warm(url, name) for name in names}
        assert {name: s["lastRunBuiltImageID"] for name, s in statuses.items()} == amis
        before = proxy.by_operation()
        for name in names:
            answer = sync(url, request(parent(name=name, status=statuses[name])))
            assert is_ready(answer), answer["status"]
            assert answer["children"] == []
        assert proxy.by_operation() == before


def test_a_publication_outside_the_prefix_is_a_condition_not_an_aws_call_on_every_sync(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    """Issue 16, defect 7: the refusal cannot succeed until the spec or the settings change."""
    image_id = active_ami(ec2_env, NAME)
    raw = {**SEED_SPEC, "publish": {"ssmParameter": "/teams/web/eks"}}
    with hook(monkeypatch, proxy.url, publish_parameter_prefix="/platform/ami/", **QUIET) as url:
        first = sync(url, request(parent(raw)))
        assert first["status"]["lastRunBuiltImageID"] == image_id
        refused = condition(first, "PublishFailed")
        assert refused is not None
        assert refused["reason"] == "OutsidePrefix"
        assert "/teams/web/eks" in refused["message"]
        assert "/platform/ami/" in refused["message"]
        before = proxy.by_operation()
        again = sync(url, request(parent(raw, status=first["status"])))
        assert again["status"] == first["status"]
        assert proxy.by_operation() == before
    assert proxy.calls("PutParameter") == 0


# -- exact before acting ------------------------------------------------------------------------------------


def test_a_replica_with_a_stale_index_does_not_start_a_duplicate_build(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    neighbour = "neighbour"
    active_ami(ec2_env, neighbour)
    with (
        AwsProxy(ec2_env).running() as proxy_b,
        hook(monkeypatch, proxy.url, **QUIET) as a,
        hook(monkeypatch, proxy_b.url, **QUIET) as b,
    ):
        warm(a, neighbour)
        warm(b, neighbour)

        first = sync(a, request(parent()))
        (job,) = first["children"]
        now = datetime.now(UTC)
        done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
        built = register_built_ami(ec2_client(ec2_env), "opsy-generic-fips-1")
        pod = build_pod(done, f"{REGION}:{built}")
        recorded = sync(a, request(parent(status=first["status"]), [done], [pod]))
        assert recorded["status"]["lastRunBuiltImageID"] == built
        # A's own tagging went into A's index at once (write-through): its next timer sync costs nothing.
        seen_a = proxy.calls()
        assert is_ready(sync(a, request(parent(status=recorded["status"]), [done], [pod])))
        assert proxy.calls() == seen_a

        # B's index was filled before A tagged the AMI: only a direct read can tell it exists.
        seen_a, seen_b = proxy.calls(), proxy_b.calls()
        asked = len(proxy_b.forms("DescribeImages"))
        answer = sync(b, request(parent(status=recorded["status"]), [done], [pod]))
        assert [c["metadata"]["name"] for c in answer["children"]] == [done["metadata"]["name"]]
        assert is_ready(answer), answer["status"]
        assert answer["status"]["lastRunBuiltImageID"] == built
        assert built in str(condition(answer, "Ready"))
        assert proxy_b.calls() > seen_b
        assert asked_for(proxy_b.forms("DescribeImages")[asked:], NAME)
        assert proxy.calls() == seen_a

        # What B read exactly is now in its index: the next timer sync costs nothing.
        seen_b = proxy_b.calls()
        steady = sync(b, request(parent(status=answer["status"]), [done], [pod]))
        assert is_ready(steady)
        assert steady["children"] == answer["children"]
        assert proxy_b.calls() == seen_b


# -- slow or failing EC2 ------------------------------------------------------------------------------------


def test_slow_ec2_delays_only_the_syncs_that_act(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    active_ami(ec2_env, NAME)
    with hook(monkeypatch, proxy.url, **QUIET) as url:
        status = warm(url)
        try:
            proxy.slow("ec2", 5.0)
            before = proxy.calls()
            steady = sync(url, request(parent(status=status)))
            assert is_ready(steady), steady["status"]
            assert steady["children"] == []
            assert proxy.calls() == before

            # A new builder must confirm on EC2 that it has no AMI before it builds: it waits, then gives up.
            new = sync(url, request(parent(name="newcomer")))
            assert proxy.calls() > before
            assert condition(new, "AWSError") is not None, new["status"]
            assert new["children"] == []
        finally:
            proxy.slow("ec2", 0)


# anyio's default limit of worker threads, which FastAPI runs blocking work in.
WORKER_THREADS = 40


def test_steady_syncs_answer_while_every_worker_thread_waits_on_ec2(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    """A burst of new builders stuck on a hung EC2 must not hold up the builders that have nothing to do."""
    active_ami(ec2_env, NAME)
    # Nothing gives up on its own: the held calls keep their worker threads until the test lets them go.
    with hook(monkeypatch, proxy.url, aws_read_timeout=3 * DEADLINE, **QUIET) as url:
        status = warm(url)
        newcomers = [f"newcomer-{i:02d}" for i in range(WORKER_THREADS + 5)]
        answers: dict[str, int] = {}

        def first_sync(name: str) -> None:
            answers[name] = post(f"{url}/sync", request(parent(name=name)))[0]

        proxy.hold()
        burst = [threading.Thread(target=first_sync, args=(name,)) for name in newcomers]
        try:
            for thread in burst:
                thread.start()
            until(lambda: proxy.held >= WORKER_THREADS, "every worker thread to wait on EC2")
            steady = sync(url, request(parent(status=status)))
            assert is_ready(steady), steady["status"]
            assert steady["children"] == []
            assert len(answers) == 0, "a new builder was answered before EC2 was"
        finally:
            proxy.release()
            for thread in burst:
                thread.join(DEADLINE)
        assert answers == dict.fromkeys(newcomers, 200)


def test_a_failing_background_refresh_keeps_answering_from_the_last_good_index(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    active_ami(ec2_env, NAME)
    with hook(monkeypatch, proxy.url, index_refresh_seconds=1, index_stale_after_seconds=2) as url:
        status = warm(url)
        steady = request(parent(status=status))

        def answer() -> dict[str, Any]:
            got = sync(url, steady)
            assert is_ready(got), got["status"]
            assert got["children"] == []
            return got

        proxy.failing = frozenset({"DescribeImages"})
        until(lambda: proxy.failed("DescribeImages"), "a background refresh to fail")
        answer()

        def stale() -> dict[str, Any] | None:
            found = condition(answer(), "ImageIndexStale")
            return found if found is not None and found["status"] == "True" else None

        found = until(stale, "the answer to say the index is stale")
        assert REGION in found["message"]

        proxy.failing = frozenset()
        until(lambda: not stale(), "a successful refresh to clear ImageIndexStale")


def test_an_outage_in_a_copy_region_degrades_only_that_region_in_memory_and_exactly(
    monkeypatch: pytest.MonkeyPatch, proxy: AwsProxy, ec2_env: str
) -> None:
    """The index answers from memory, the acting sync reads exactly: both say which region is out, and
    spec.region goes on deciding builds, Ready and expiry."""
    copy_region = "eu-west-1"
    ec2, eu = ec2_client(ec2_env), ec2_client(ec2_env, copy_region)
    # Refreshes every second (so the test's backdating shows), stale after two without success.
    with hook(monkeypatch, proxy.url, index_refresh_seconds=1, index_stale_after_seconds=2) as url:
        first = sync(url, request(parent()))
        (job,) = first["children"]
        built = register_built_ami(ec2, "opsy-new")
        copied = eu.copy_image(SourceImageId=built, SourceRegion=REGION, Name="opsy-new-copy")["ImageId"]
        now = datetime.now(UTC)
        done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
        pod = build_pod(done, f"{REGION}:{built},{copy_region}:{copied}")
        recorded = sync(url, request(parent(status=first["status"]), [done], [pod]))
        assert [i["region"] for i in recorded["status"]["images"]] == [copy_region, REGION]

        proxy.failing, proxy.failing_regions = frozenset({ALL}), frozenset({copy_region})
        expired = format_timestamp(now - timedelta(hours=49))
        ec2.create_tags(Resources=[built], Tags=[{"Key": "create-timestamp", "Value": expired}])
        body = request(parent(status=recorded["status"]), [done], [pod])

        def rebuilt() -> dict[str, Any] | None:
            answer = sync(url, body)
            assert condition(answer, "AWSError") is None, answer["status"]
            return answer if answer["status"]["state"] == "JobCreation" else None

        answer = until(rebuilt, "the expiry in spec.region to start a rebuild")
        unavailable = condition(answer, "RegionUnavailable")
        assert unavailable is not None
        assert unavailable["status"] == "True"
        assert copy_region in unavailable["message"]
        assert condition(answer, "Ready")["reason"] == "AMIExpired"  # type: ignore[index]
        assert answer["status"]["images"] == recorded["status"]["images"]
        (rebuild,) = [c for c in answer["children"] if c["metadata"]["name"] != job["metadata"]["name"]]

        # The running rebuild is followed from memory; once the region's index is stale, memory says so too.
        following = request(parent(status=answer["status"]), [done, running(rebuild)], [pod])

        def said(present: bool) -> dict[str, Any] | None:
            got = sync(url, following)
            assert got["status"]["state"] == "JobRunning", got["status"]
            assert got["status"]["images"] == recorded["status"]["images"]
            return got if (condition(got, "RegionUnavailable") is not None) is present else None

        steady = until(lambda: said(True), "a steady sync to say the copy region is out")
        assert copy_region in condition(steady, "RegionUnavailable")["message"]  # type: ignore[index]
        proxy.failing = frozenset()
        until(lambda: said(False), "the copy region's recovery to clear RegionUnavailable")
