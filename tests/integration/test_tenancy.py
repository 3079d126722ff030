"""Two namespaces, one builder name: neither touches the other's AMIs or parameter (issue 17), over real HTTP
against moto, with the hook's clock under the test's control."""

import copy
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from app.model.spec import parse_spec
from app.model.tags import Owner, format_timestamp
from tests.aws import REGION, ec2_client, register_built_ami, tags_of
from tests.builders import NAME, Clock, build_pod, parent, request, succeeded
from tests.http import post, serve
from tests.seed import SEED_SPEC

PARAMETER = "/platform/ami/web"
TEAM_A = ("team-a", "0a0a0a0a-1111-4111-8111-000000000001")
TEAM_B = ("team-b", "0b0b0b0b-2222-4222-8222-000000000002")


class Builder:
    """One PackerBuilder as Metacontroller drives it: its status and Jobs carried from answer to answer."""

    def __init__(self, url: str, team: tuple[str, str], raw: dict[str, Any]) -> None:
        self.url = url
        self.namespace, self.uid = team
        self.raw = raw
        self.status: dict[str, Any] | None = None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.answer: dict[str, Any] = {}

    def sync(self) -> dict[str, Any]:
        body = parent(self.raw, status=self.status)
        body["metadata"] |= {"namespace": self.namespace, "uid": self.uid}
        code, answer = post(f"{self.url}/sync", request(body, list(self.jobs.values()), self.pods))
        assert code == 200, answer
        self.answer, self.status = answer, answer["status"]
        kept = {c["metadata"]["name"] for c in answer["children"]}
        self.jobs = {name: job for name, job in self.jobs.items() if name in kept}
        for child in answer["children"]:
            self.jobs.setdefault(child["metadata"]["name"], child)
        return dict(answer)

    def finish(self, clock: Clock, image_id: str) -> dict[str, Any]:
        """The running build succeeds, reporting `image_id`; the next sync records it."""
        (name,) = [n for n, j in self.jobs.items() if "status" not in j]
        done = succeeded(self.jobs[name], clock.now - timedelta(minutes=20), clock.now - timedelta(minutes=1))
        self.jobs[name] = done
        self.pods = [build_pod(done, f"{REGION}:{image_id}")]
        return self.sync()

    def condition(self, kind: str) -> dict[str, Any] | None:
        return next((c for c in self.answer["status"]["conditions"] if c["type"] == kind), None)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook(ec2_env: str, clock: Clock) -> Iterator[str]:
    with serve(create_app(Settings(), images=Ec2(), clock=clock)) as url:
        yield url


def exists(ec2_env: str, image_id: str) -> bool:
    found = ec2_client(ec2_env).describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}])
    return bool(found["Images"])


def parameter(ec2_env: str) -> tuple[str, dict[str, str]]:
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    value = ssm.get_parameter(Name=PARAMETER)["Parameter"]["Value"]
    tags = ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=PARAMETER)["TagList"]
    return value, {t["Key"]: t["Value"] for t in tags}


def spec(**fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    raw.update(fields)
    return raw


def test_two_namespaces_with_one_builder_name_keep_to_their_own_amis_and_parameter(
    hook: str, clock: Clock, ec2_env: str
) -> None:
    raw = spec(retention={"keep": 1}, publish={"ssmParameter": PARAMETER})
    a, b = Builder(hook, TEAM_A, raw), Builder(hook, TEAM_B, raw)
    ec2 = ec2_client(ec2_env)

    a.sync()
    a1 = register_built_ami(ec2, "web-a-1")
    a.finish(clock, a1)
    assert tags_of(ec2, a1)["created-by-namespace"] == "team-a"
    assert parameter(ec2_env) == (
        a1,
        {"brought-to-you-by": "opsy-the-ami-operator", "created-by": NAME, "created-by-namespace": "team-a"},
    )

    # team-b's builder has the same five management tags: it does not adopt team-a's AMI, it builds its own.
    assert b.sync()["status"]["state"] == "JobCreation"
    b1 = register_built_ami(ec2, "web-b-1")
    b.finish(clock, b1)
    assert b.answer["status"]["lastRunBuiltImageID"] == b1
    assert tags_of(ec2, b1)["created-by-namespace"] == "team-b"
    assert tags_of(ec2, a1)["status"] == "active"  # not retired by team-b's build
    refused = b.condition("PublishFailed")
    assert refused is not None
    assert refused["reason"] == "ParameterOwned"
    assert "team-a/" + NAME in refused["message"]
    assert parameter(ec2_env)[0] == a1  # the first owner's value stays

    # Both expire; each rebuilds, retires and (keep 1) removes only its own.
    clock.now += timedelta(hours=49)
    a.sync()
    a2 = register_built_ami(ec2, "web-a-2")
    a.finish(clock, a2)
    b.sync()
    b2 = register_built_ami(ec2, "web-b-2")
    b.finish(clock, b2)
    for builder in (a, b, a, b):
        builder.sync()

    assert not exists(ec2_env, a1)
    assert not exists(ec2_env, b1)
    assert tags_of(ec2, a2)["status"] == "active"
    assert tags_of(ec2, b2)["status"] == "active"
    assert parameter(ec2_env)[0] == a2
    assert b.condition("PublishFailed") is not None
    assert a.condition("PublishFailed") is None


def legacy_ami(ec2_env: str, raw: dict[str, Any], clock: Clock, **tags: str) -> str:
    """An AMI of the original operator: the five management tags, no namespace."""
    management = Owner.of("any", NAME, parse_spec(raw)).management
    stamp = {"status": "active", "create-timestamp": format_timestamp(clock.now - timedelta(hours=1))}
    return register_built_ami(ec2_client(ec2_env), "legacy", tags={**management, **stamp, **tags})


def test_a_legacy_ami_is_adopted_and_claimed_by_exactly_one_builder(
    hook: str, clock: Clock, ec2_env: str
) -> None:
    raw = spec()
    legacy = legacy_ami(ec2_env, raw, clock)
    a, b = Builder(hook, TEAM_A, raw), Builder(hook, TEAM_B, raw)

    assert a.sync()["status"]["state"] == "AMIAdopted"
    assert a.answer["status"]["lastRunBuiltImageID"] == legacy
    assert tags_of(ec2_client(ec2_env), legacy)["created-by-namespace"] == "team-a"
    assert b.sync()["status"]["state"] == "JobCreation"
    assert a.sync()["status"]["state"] == "AMIAdopted"  # still team-a's, untouched by team-b


class LosesEveryClaim(Ec2):
    """EC2 where another namespace's builder claims a legacy AMI right after this hook does."""

    def __init__(self, rival: str) -> None:
        super().__init__()
        self.rival = rival

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        super().tag_images(region, image_ids, tags)
        if set(tags) == {"created-by-namespace"}:
            super().tag_images(region, image_ids, {"created-by-namespace": self.rival})


def test_a_builder_that_loses_the_race_for_a_legacy_ami_builds_its_own(clock: Clock, ec2_env: str) -> None:
    raw = spec(publish={"ssmParameter": PARAMETER})
    legacy = legacy_ami(ec2_env, raw, clock)
    with serve(create_app(Settings(), images=LosesEveryClaim("team-b"), clock=clock)) as url:
        answer = Builder(url, TEAM_A, raw).sync()
    assert answer["status"]["state"] == "JobCreation"
    assert tags_of(ec2_client(ec2_env), legacy)["created-by-namespace"] == "team-b"
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    assert ssm.describe_parameters()["Parameters"] == []  # nothing was published on the lost AMI


def test_a_legacy_ami_that_is_not_adopted_is_never_retired_or_removed(
    hook: str, clock: Clock, ec2_env: str
) -> None:
    raw = spec(retention={"keep": 1})
    old = {"create-timestamp": format_timestamp(clock.now - timedelta(days=5))}
    expired = legacy_ami(ec2_env, raw, clock, **old)
    a = Builder(hook, TEAM_A, raw)
    assert a.sync()["status"]["state"] == "JobCreation"  # expired: not adoptable
    a.finish(clock, register_built_ami(ec2_client(ec2_env), "web-a-1"))
    a.sync()
    tags = tags_of(ec2_client(ec2_env), expired)
    assert tags["status"] == "active"
    assert "created-by-namespace" not in tags
    assert exists(ec2_env, expired)
