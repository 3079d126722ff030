"""The service over real HTTP (uvicorn) against a real moto EC2: the whole life of a PackerBuilder."""

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.aws.ec2 import Ec2
from app.core.children import as_desired
from app.main import create_app
from app.model.settings import Settings
from app.model.tags import format_timestamp
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client, register_built_ami, tags_of
from tests.builders import build_pod, fail_each_build, parent, request, running, succeeded
from tests.http import get, post, serve
from tests.seed import SEED_SPEC


@pytest.fixture
def hook(ec2_env: str) -> Iterator[str]:
    app = create_app(Settings(), images=Ec2())
    with serve(app) as url:
        yield url


def sync(hook: str, body: dict[str, Any]) -> dict[str, Any]:
    code, answer = post(f"{hook}/sync", body)
    assert code == 200, answer
    assert set(answer) <= {"status", "children", "resyncAfterSeconds"}
    return dict(answer)


def names(answer: dict[str, Any]) -> list[str]:
    return [c["metadata"]["name"] for c in answer["children"]]


def test_new_build_success_adoption_of_its_own_ami_and_expiry(hook: str, ec2_env: str) -> None:
    now = datetime.now(UTC)
    ec2 = ec2_client(ec2_env)

    first = sync(hook, request(parent()))
    assert len(first["children"]) == 1
    job = first["children"][0]
    assert first["status"]["lastRunBaseImageID"] == NEWEST_EKS_130_X86
    assert first["status"]["jobStatus"] == "running"

    following = sync(
        hook, request(parent(status=first["status"]), [running(job, now - timedelta(minutes=20))])
    )
    assert following["children"] == [job]

    built = register_built_ami(ec2, "opsy-generic-fips-1")
    done = succeeded(job, now - timedelta(minutes=20), now - timedelta(minutes=1))
    pod = build_pod(done, f"{REGION}:{built}")
    recorded = sync(hook, request(parent(status=following["status"]), [done], [pod]))
    assert recorded["status"]["jobStatus"] == "completed"
    assert recorded["status"]["lastRunBuiltImageID"] == built
    assert names(recorded) == [job["metadata"]["name"]]
    tags = tags_of(ec2, built)
    assert tags["status"] == "active"
    assert tags["create-timestamp"] == format_timestamp(now - timedelta(minutes=1))
    assert tags["build-id"] == first["status"]["buildID"]
    assert tags["created-by"] == "packer-builder-local"
    assert tags["base-ami"] == NEWEST_EKS_130_X86

    settled = sync(hook, request(parent(status=recorded["status"]), [done], [pod]))
    # successfulJobsHistoryLimit 1: the build that made the current AMI stays for `kubectl logs`.
    assert settled["children"] == [as_desired(done)]
    quiet = sync(hook, request(parent(status=settled["status"])))
    assert quiet["children"] == []
    assert any(
        c["message"] == f"Latest Created AMI {built} has not expired and is active"
        for c in quiet["status"]["conditions"]
    )

    expired_at = format_timestamp(now - timedelta(hours=49))
    ec2.create_tags(Resources=[built], Tags=[{"Key": "create-timestamp", "Value": expired_at}])
    rebuild = sync(hook, request(parent(status=quiet["status"])))
    assert len(rebuild["children"]) == 1
    assert names(rebuild) != [job["metadata"]["name"]]


def test_an_existing_tagged_ami_is_adopted_as_is(hook: str, ec2_env: str) -> None:
    ec2 = ec2_client(ec2_env)
    stamp = format_timestamp(datetime.now(UTC) - timedelta(hours=3))
    tags = {
        "brought-to-you-by": "opsy-the-ami-operator",
        "cluster-name": "opsy-gitops",
        "created-by": "packer-builder-local",
        "packer-repo": SEED_SPEC["builder"]["repoURL"],
        "packer-repo-branch": "main",
        "status": "active",
        "create-timestamp": stamp,
    }
    existing = register_built_ami(ec2, "adopt-me", tags=tags)
    answer = sync(hook, request(parent()))
    assert answer["children"] == []
    assert answer["status"]["lastRunBuiltImageID"] == existing
    assert tags_of(ec2, existing)["create-timestamp"] == stamp


PAST_THE_CALENDAR = "9999-12-31T23:59:59-01:00"  # 10000-01-01T00:59:59Z once in UTC


@pytest.mark.parametrize("stamp", ["9999-12-31T00:00:00Z", PAST_THE_CALENDAR])
def test_an_ami_pinned_in_the_far_future_is_answered_not_a_500(hook: str, ec2_env: str, stamp: str) -> None:
    tags = {
        "brought-to-you-by": "opsy-the-ami-operator",
        "cluster-name": "opsy-gitops",
        "created-by": "packer-builder-local",
        "packer-repo": SEED_SPEC["builder"]["repoURL"],
        "packer-repo-branch": "main",
        "status": "active",
        "create-timestamp": stamp,
    }
    pinned = register_built_ami(ec2_client(ec2_env), "pinned", tags=tags)
    status = None
    for _ in range(2):  # the first sync adopts it, the next finds it recorded
        answer = sync(hook, request(parent(status=status)))
        status = answer["status"]
        assert answer["children"] == []
        assert answer["status"]["lastRunBuiltImageID"] == pinned
        (ready,) = [c for c in answer["status"]["conditions"] if c["type"] == "Ready"]
        assert ready["status"] == "True"
        assert ready["message"] == f"AMI {pinned} is active until 9000-01-03T00:00:00Z"


def test_a_job_with_times_past_the_calendar_is_answered_not_a_500(hook: str) -> None:
    first = sync(hook, request(parent()))
    (job,) = first["children"]
    beyond = running(job)
    beyond["metadata"]["creationTimestamp"] = PAST_THE_CALENDAR
    beyond["status"]["startTime"] = PAST_THE_CALENDAR
    answer = sync(hook, request(parent(status=first["status"]), [beyond]))
    assert answer["children"] == [job]
    assert answer["status"]["state"] == "JobRunning"
    code, finalizing = post(f"{hook}/finalize", request(parent(status=answer["status"]), [beyond]))
    assert code == 200
    assert finalizing["finalized"] is False


def test_failures_retry_up_to_the_limit(hook: str) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    spec["maxNumberOfJobs"] = 2
    answer, jobs = fail_each_build(
        sync(hook, request(parent(spec))),
        2,
        lambda status, jobs: sync(hook, request(parent(spec, status=status), jobs)),
    )
    seen = {job["metadata"]["name"] for job in jobs}
    assert answer["status"]["failedJobCount"] == 2
    assert sorted(names(answer)) == sorted(seen)
    assert any(
        c["type"] == "MaxFailedJobsReached" and c["status"] == "True" for c in answer["status"]["conditions"]
    )
    again = sync(hook, request(parent(spec, status=answer["status"]), jobs))
    assert sorted(names(again)) == sorted(seen)
    assert again["status"]["failedJobCount"] == 2


def test_same_request_twice_is_byte_identical_over_http(hook: str) -> None:
    body = request(parent())
    first = post(f"{hook}/sync", body)
    assert post(f"{hook}/sync", body) == first


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"not json", 422),
        (b"[]", 422),
        (b'{"parent": "x"}', 422),
        (b'{"parent": {"metadata": {}}}', 422),
        (b'{"children": {}}', 422),
        (b'{"parent": {"metadata": {"name": "b", "generation": false}}}', 422),
        (b'{"parent": {"metadata": {"name": "b", "generation": "1"}}}', 422),
        (b'{"parent": {"metadata": {"name": "b"}}, "finalizing": 0}', 422),
        (b'{"parent": {"metadata": {"name": "b"}}, "finalizing": "false"}', 422),
    ],
)
def test_malformed_requests_get_a_clear_4xx(hook: str, raw: bytes, expected: int) -> None:
    code, answer = post(f"{hook}/sync", None, raw=raw)
    assert code == expected
    assert answer["error"] == "not a Metacontroller hook request"
    assert answer["problems"]
    if b"generation" in raw or b"finalizing" in raw:
        assert any(("generation" in p or "finalizing" in p) for p in answer["problems"]), answer


def test_a_mistyped_region_is_an_invalid_spec_with_the_nearest_region(hook: str) -> None:
    spec = copy.deepcopy(SEED_SPEC)
    spec["region"] = "us-wset-2"
    answer = sync(hook, request(parent(spec)))
    assert answer["children"] == []
    invalid = next(c for c in answer["status"]["conditions"] if c["type"] == "InvalidSpec")
    assert (
        invalid["message"]
        == "spec.region: 'us-wset-2' is not an AWS region this hook knows; did you mean us-west-2?"
    )
    assert not any(c["type"] == "AWSError" for c in answer["status"]["conditions"])


def test_customize_asks_for_this_builders_pods(hook: str) -> None:
    code, answer = post(f"{hook}/customize", {"controller": {}, "parent": parent()})
    assert code == 200
    (rule,) = [r for r in answer["relatedResources"] if r["resource"] == "pods"]
    assert rule["apiVersion"] == "v1"
    assert rule["namespace"] == "ami-builds"
    assert rule["labelSelector"] == {
        "matchLabels": {"ami.refresh.ops/owner-uid": parent()["metadata"]["uid"]}
    }


def test_finalize_over_http(hook: str) -> None:
    first = sync(hook, request(parent()))
    job = first["children"][0]
    code, waiting = post(f"{hook}/finalize", request(parent(status=first["status"]), [running(job)]))
    assert code == 200
    assert waiting["finalized"] is False
    assert waiting["children"] == [job]
    code, done = post(f"{hook}/finalize", request(parent(status=first["status"]), []))
    assert done["finalized"] is True


def test_health_and_docs(hook: str) -> None:
    assert get(f"{hook}/healthz")[0] == 200
    assert get(f"{hook}/readyz")[0] == 200
    code, page = get(f"{hook}/docs")
    assert code == 200
    assert b"swagger" in page.lower()
    assert b"/sync" in get(f"{hook}/openapi.json")[1]
