"""Release channels and their levers (issue 21, docs/release.md) over real HTTP (uvicorn) against a real moto EC2
and SSM, with the hook's clock under the test's control and `after` in seconds.

The test plays Metacontroller (it carries each answer's status and Jobs into the next request, and bumps the
generation on a spec edit) and the kubelet (it finishes the running build, reporting AMIs it registered in moto
as Packer would). A restart is a new app instance (a new uvicorn server) over the same moto.
"""

import copy
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from app.aws.ec2 import Ec2
from app.main import create_app
from app.model.settings import Settings
from app.model.tags import format_timestamp
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client, register_built_ami, tags_of
from tests.builders import Clock, build_pod, empties, parent, request, running, succeeded
from tests.http import post, serve
from tests.seed import SEED_SPEC

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

COPY_REGION = "eu-west-1"
WEB = "/platform/ami/web"
CANARY = "/platform/ami/web-canary"
STABLE = "/platform/ami/web-stable"
BASE_PARAMETER = "/platform/base/eks-1.30-al2023-x86_64"
PREVIOUS_EKS_130_X86 = "ami-0a1f30a1b2c3d4e02"
ARM64_EKS_130 = "ami-0a1f30a1b2c3d4e05"
CANARY_TAG = "ami.refresh.ops/channel/canary"
STABLE_TAG = "ami.refresh.ops/channel/stable"


class Hook:
    """The hook as a restartable server: `restart()` replaces the app (no memory survives) over the same moto."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._stack = ExitStack()
        self.url = ""
        self.restart()

    def restart(self) -> None:
        self._stack.close()
        self._stack = ExitStack()
        # The moto server shares two busy cores with the rest of the suite: a slow answer from it is not what
        # these tests are about (tests/integration/test_faults.py is).
        images = Ec2(connect_timeout=5, read_timeout=30)
        self.url = self._stack.enter_context(serve(create_app(Settings(), images=images, clock=self.clock)))

    def close(self) -> None:
        self._stack.close()


class Builder:
    """One PackerBuilder as Metacontroller drives it: its spec, generation, status and Jobs carried from answer
    to answer."""

    def __init__(self, hook: Hook, raw: dict[str, Any]) -> None:
        self.hook = hook
        self.raw = raw
        self.generation = 1
        self.status: dict[str, Any] | None = None
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: list[dict[str, Any]] = []
        self.answer: dict[str, Any] = {}

    @property
    def clock(self) -> Clock:
        return self.hook.clock

    def body(self) -> dict[str, Any]:
        return request(
            parent(self.raw, status=self.status, generation=self.generation),
            list(self.jobs.values()),
            self.pods,
        )

    def sync(self) -> dict[str, Any]:
        code, answer = post(f"{self.hook.url}/sync", self.body())
        assert code == 200, answer
        assert empties(answer["status"]) == []
        self.answer, self.status = answer, answer["status"]
        kept = {c["metadata"]["name"] for c in answer["children"]}
        self.jobs = {name: job for name, job in self.jobs.items() if name in kept}
        for child in answer["children"]:
            self.jobs.setdefault(child["metadata"]["name"], child)
        return dict(answer)

    def edit(self, **release: Any) -> dict[str, Any]:
        """Change spec.release (None removes a field), as `kubectl patch` would; the next sync sees it."""
        now = self.raw.setdefault("release", {})
        for key, value in release.items():
            if value is None:
                now.pop(key, None)
            else:
                now[key] = value
        self.generation += 1
        return self.sync()

    def building(self) -> str:
        """The name of the build Job asked for and not finished yet."""
        (name,) = [
            n for n, job in self.jobs.items() if not {"succeeded", "failed"} & set(job.get("status", {}))
        ]
        return name

    def finish(self, *built: tuple[str, str]) -> dict[str, Any]:
        """The running build succeeds now, reporting (region, AMI id) pairs; the next sync records them."""
        name = self.building()
        done = succeeded(self.jobs[name], self.clock.now - timedelta(minutes=10), self.clock.now)
        self.jobs[name] = done
        self.pods = [build_pod(done, ",".join(f"{region}:{image_id}" for region, image_id in built))]
        return self.sync()

    def build(self, ec2_env: str, *regions: str) -> str:
        """The asked-for build registers its AMI in spec.region (and a copy in each of `regions`) and succeeds
        now; returns the AMI in spec.region."""
        home = register_built_ami(ec2_client(ec2_env), f"web-{len(self.jobs)}")
        self.finish((REGION, home), *((region, copy_of(ec2_env, home, region)) for region in regions))
        assert self.answer["status"]["lastRunBuiltImageID"] == home
        return home

    def image(self, region: str) -> str:
        """The builder's current AMI in `region`, as status.images lists it."""
        (image_id,) = [i["imageID"] for i in self.answer["status"]["images"] if i["region"] == region]
        return str(image_id)

    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in self.answer["status"]["conditions"]}

    def channels(self) -> list[dict[str, Any]]:
        return list(self.answer["status"].get("channels", []))


def copy_of(ec2_env: str, image_id: str, region: str) -> str:
    """What Packer's `ami_regions` does: copy the AMI built in spec.region to `region`."""
    copied = ec2_client(ec2_env, region).copy_image(SourceImageId=image_id, SourceRegion=REGION, Name="web")
    return copied["ImageId"]


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook(ec2_env: str, clock: Clock) -> Iterator[Hook]:
    server = Hook(clock)
    yield server
    server.close()


def spec(stable_after: str = "120s", **fields: Any) -> dict[str, Any]:
    raw = copy.deepcopy(SEED_SPEC)
    raw["timeOuts"] = {"expiresIn": "60s", "controllerTimer": "5m"}
    raw["publish"] = {
        "ssmParameter": WEB,
        "channels": [
            {"name": "canary", "ssmParameter": CANARY},
            {"name": "stable", "ssmParameter": STABLE, "after": stable_after},
        ],
    }
    raw.update(fields)
    return raw


def parameters(ec2_env: str, region: str = REGION) -> dict[str, str]:
    ssm = boto3.session.Session().client("ssm", region_name=region, endpoint_url=ec2_env)
    found = ssm.get_parameters_by_path(Path="/platform/ami", Recursive=True)["Parameters"]
    return {p["Name"]: p["Value"] for p in found}


def versions(ec2_env: str, region: str = REGION) -> dict[str, int]:
    ssm = boto3.session.Session().client("ssm", region_name=region, endpoint_url=ec2_env)
    found = ssm.get_parameters_by_path(Path="/platform/ami", Recursive=True)["Parameters"]
    return {p["Name"]: p["Version"] for p in found}


def state(client: "EC2Client", image_id: str) -> str:
    (image,) = client.describe_images(ImageIds=[image_id], IncludeDisabled=True)["Images"]
    return str(image["State"])


def entry(channel: str, image_id: str, at: datetime, pinned: bool = False) -> dict[str, Any]:
    """A status.channels item."""
    return {"name": channel, "imageID": image_id, "enteredAt": format_timestamp(at), "pinned": pinned}


def test_two_builds_go_through_two_channels_in_order_across_a_restart(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    """Builds every 60 s (expiry), stable `after` 120 s: stable never starves, it takes each build in turn."""
    ec2 = ec2_client(ec2_env)
    pb = Builder(hook, spec())
    t0 = clock.now

    pb.sync()
    a1 = register_built_ami(ec2, "web-1")
    a1_eu = copy_of(ec2_env, a1, COPY_REGION)
    pb.finish((REGION, a1), (COPY_REGION, a1_eu))
    assert pb.channels() == [entry("canary", a1, t0), {"name": "stable", "pinned": False}]
    assert parameters(ec2_env) == {WEB: a1, CANARY: a1}
    assert parameters(ec2_env, COPY_REGION) == {WEB: a1_eu, CANARY: a1_eu}
    assert tags_of(ec2, a1)[CANARY_TAG] == format_timestamp(t0)
    assert STABLE_TAG not in tags_of(ec2, a1)

    # Build 2 (a1 expired after 60 s) enters canary; stable waits for a1's 120 s in canary.
    clock.now = t0 + timedelta(seconds=61)
    assert pb.sync()["status"]["state"] == "JobCreation"
    clock.now = t0 + timedelta(seconds=70)
    a2 = register_built_ami(ec2, "web-2")
    a2_eu = copy_of(ec2_env, a2, COPY_REGION)
    pb.finish((REGION, a2), (COPY_REGION, a2_eu))
    t2 = clock.now
    assert pb.channels() == [entry("canary", a2, t2), {"name": "stable", "pinned": False}]
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2}
    assert parameters(ec2_env, COPY_REGION) == {WEB: a2_eu, CANARY: a2_eu}

    # A restart: nothing the hook remembers is needed, the entry tags are in EC2. Nothing changed, so nothing
    # is written and the answer is the same.
    written = versions(ec2_env), versions(ec2_env, COPY_REGION)
    before = pb.answer
    hook.restart()
    clock.now = t0 + timedelta(seconds=119)
    pb.sync()
    assert (pb.answer["status"], pb.answer["children"]) == (before["status"], before["children"])
    assert (versions(ec2_env), versions(ec2_env, COPY_REGION)) == written
    assert pb.channels()[1] == {"name": "stable", "pinned": False}

    # a1 has been in canary for 120 s: it enters stable, although canary moved on (and a1 expired).
    clock.now = t0 + timedelta(seconds=120)
    pb.sync()
    assert pb.channels() == [entry("canary", a2, t2), entry("stable", a1, clock.now)]
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a1}
    assert parameters(ec2_env, COPY_REGION) == {WEB: a2_eu, CANARY: a2_eu, STABLE: a1_eu}
    assert tags_of(ec2, a1)[STABLE_TAG] == format_timestamp(clock.now)

    # Build 3 at a2's expiry; a2 enters stable after its own 120 s in canary, and never a1 again.
    clock.now = t0 + timedelta(seconds=131)
    pb.sync()
    clock.now = t0 + timedelta(seconds=140)
    a3 = register_built_ami(ec2, "web-3")
    pb.finish((REGION, a3))
    t3 = clock.now
    clock.now = t0 + timedelta(seconds=189)
    pb.sync()
    assert pb.channels() == [entry("canary", a3, t3), entry("stable", a1, t0 + timedelta(seconds=120))]
    clock.now = t0 + timedelta(seconds=190)
    pb.sync()
    assert pb.channels() == [entry("canary", a3, t3), entry("stable", a2, clock.now)]
    assert parameters(ec2_env) == {WEB: a3, CANARY: a3, STABLE: a2}
    # The copy region has no copy of build 3: its names keep the newest build it has there.
    assert parameters(ec2_env, COPY_REGION) == {WEB: a2_eu, CANARY: a2_eu, STABLE: a2_eu}


def test_a_pin_rolls_a_channel_back_until_it_is_removed_and_a_wrong_pin_changes_nothing(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    ec2 = ec2_client(ec2_env)
    pb = Builder(hook, spec(stable_after="30s"))
    t0 = clock.now
    pb.sync()
    a1 = pb.build(ec2_env, COPY_REGION)
    a1_eu = pb.image(COPY_REGION)
    clock.now = t0 + timedelta(seconds=30)
    pb.sync()
    clock.now = t0 + timedelta(seconds=40)
    pb.edit(rebuild="second")
    a2 = pb.build(ec2_env, COPY_REGION)
    a2_eu = pb.image(COPY_REGION)
    t2 = clock.now
    clock.now = t0 + timedelta(seconds=70)
    pb.sync()
    assert pb.channels() == [entry("canary", a2, t2), entry("stable", a2, clock.now)]

    # Roll stable back to build 1, in every region; canary keeps build 2.
    clock.now = t0 + timedelta(seconds=80)
    pb.edit(pin={"stable": a1})
    pinned_at = clock.now
    assert pb.channels() == [entry("canary", a2, t2), entry("stable", a1, pinned_at, pinned=True)]
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a1}
    assert parameters(ec2_env, COPY_REGION) == {WEB: a2_eu, CANARY: a2_eu, STABLE: a1_eu}
    assert tags_of(ec2, a1)[STABLE_TAG] == format_timestamp(pinned_at)
    assert "ReleaseInvalid" not in pb.conditions()

    # A pin of a channel that does not exist, or of an AMI that is not this builder's: said, and the
    # channel stays where it is; the rest of the spec still works.
    clock.now = t0 + timedelta(seconds=90)
    pb.edit(pin={"stable": a1, "prod": a2})
    invalid = pb.conditions()["ReleaseInvalid"]
    assert invalid["status"] == "True"
    assert "release.pin.prod" in invalid["message"]
    assert pb.channels()[1] == entry("stable", a1, pinned_at, pinned=True)
    pb.edit(pin={"stable": NEWEST_EKS_130_X86})
    invalid = pb.conditions()["ReleaseInvalid"]
    assert "release.pin.stable" in invalid["message"]
    assert NEWEST_EKS_130_X86 in invalid["message"]
    assert pb.channels()[1]["imageID"] == a1
    assert parameters(ec2_env)[STABLE] == a1
    assert pb.answer["status"]["state"] == "AMICreated"

    # Unpinned: promotion resumes at the next sync, from what soaked in canary.
    clock.now = t0 + timedelta(seconds=100)
    pb.edit(pin=None)
    assert "ReleaseInvalid" not in pb.conditions()
    assert pb.channels() == [entry("canary", a2, t2), entry("stable", a2, clock.now)]
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a2}
    assert parameters(ec2_env, COPY_REGION) == {WEB: a2_eu, CANARY: a2_eu, STABLE: a2_eu}


def far_window(clock: Clock) -> str:
    """A daily schedule whose window opens twelve hours after the test's start: a build that waited for it
    would not start in the test."""
    return f"0 {(clock.now.hour + 12) % 24} * * *"


def test_revoking_the_current_ami_falls_back_everywhere_and_rebuilds_at_once_outside_the_window(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    ec2, eu = ec2_client(ec2_env), ec2_client(ec2_env, COPY_REGION)
    raw = spec(stable_after="30s", schedule=far_window(clock))
    raw["timeOuts"]["expiresIn"] = "48h"
    pb = Builder(hook, raw)
    t0 = clock.now
    pb.sync()  # a new builder (created weeks ago) was due long before this window
    a1 = pb.build(ec2_env, COPY_REGION)
    a1_eu = pb.image(COPY_REGION)
    clock.now = t0 + timedelta(seconds=30)
    pb.sync()
    pb.edit(rebuild="second")  # a rebuild token does not wait for the window
    a2 = pb.build(ec2_env, COPY_REGION)
    a2_eu = pb.image(COPY_REGION)
    t2 = clock.now
    assert pb.channels() == [entry("canary", a2, t2), entry("stable", a1, t0 + timedelta(seconds=30))]
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a1}

    clock.now = t0 + timedelta(seconds=40)
    answer = pb.edit(revoke=[a2])

    # Build 2 is revoked in both regions (its copy follows by build id), and disabled once nothing names it.
    for client, image_id in ((ec2, a2), (eu, a2_eu)):
        assert tags_of(client, image_id)["status"] == "revoked"
        assert state(client, image_id) == "disabled"
    # Each parameter falls back to the newest AMI it held before that is not revoked.
    assert parameters(ec2_env) == {WEB: a1, CANARY: a1, STABLE: a1}
    assert parameters(ec2_env, COPY_REGION) == {WEB: a1_eu, CANARY: a1_eu, STABLE: a1_eu}
    assert pb.channels() == [entry("canary", a1, t0), entry("stable", a1, t0 + timedelta(seconds=30))]
    revoked = pb.conditions()["Revoked"]
    assert revoked["status"] == "True"
    assert a2 in revoked["message"]
    assert revoked["reason"] != "NothingToFallBackTo"
    # moto has no EnableImageDeprecation: the attempt is reported, nothing else lost.
    assert "DeprecationNotSet" in pb.conditions()
    # The current AMI is gone: a new build at once, although the window is hours away.
    assert answer["status"]["state"] == "JobCreation"
    a3 = pb.build(ec2_env)
    assert parameters(ec2_env) == {WEB: a3, CANARY: a3, STABLE: a1}
    assert pb.channels()[0] == entry("canary", a3, clock.now)
    assert tags_of(ec2, a2)["status"] == "revoked"

    # A revoked AMI cannot be pinned: the channel stays where it is.
    pb.edit(pin={"stable": a2})
    invalid = pb.conditions()["ReleaseInvalid"]
    assert "release.pin.stable" in invalid["message"]
    assert f"{a2} is revoked" in invalid["message"]
    assert parameters(ec2_env)[STABLE] == a1


def test_revoking_the_only_ami_deletes_its_parameters_until_a_new_one_is_built(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    ec2, eu = ec2_client(ec2_env), ec2_client(ec2_env, COPY_REGION)
    raw = spec(stable_after="0s")
    raw["timeOuts"]["expiresIn"] = "48h"
    pb = Builder(hook, raw)
    pb.sync()
    a1 = pb.build(ec2_env, COPY_REGION)
    a1_eu = pb.image(COPY_REGION)
    assert parameters(ec2_env) == {WEB: a1, CANARY: a1, STABLE: a1}

    clock.now += timedelta(seconds=10)
    answer = pb.edit(revoke=[a1])

    # A launch that fails beats a launch from a revoked AMI: every name of the builder is gone, everywhere.
    assert parameters(ec2_env) == {}
    assert parameters(ec2_env, COPY_REGION) == {}
    for client, image_id in ((ec2, a1), (eu, a1_eu)):
        assert tags_of(client, image_id)["status"] == "revoked"
        assert state(client, image_id) == "disabled"
    revoked = pb.conditions()["Revoked"]
    assert revoked["reason"] == "NothingToFallBackTo"
    assert a1 in revoked["message"]
    for name in (WEB, CANARY, STABLE):
        assert name in revoked["message"]
    assert pb.channels() == [{"name": "canary", "pinned": False}, {"name": "stable", "pinned": False}]
    assert answer["status"]["state"] == "JobCreation"

    # Revoked stays revoked, even once it leaves the list; the new build is published everywhere again.
    clock.now += timedelta(seconds=10)
    pb.edit(revoke=None)
    a2 = pb.build(ec2_env)
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a2}
    assert tags_of(ec2, a1)["status"] == "revoked"
    revoked = pb.conditions()["Revoked"]
    assert revoked["reason"] == "Revoked"
    assert a1 in revoked["message"]
    assert pb.channels() == [entry("canary", a2, clock.now), entry("stable", a2, clock.now)]


def test_revoking_a_base_revokes_what_was_built_on_it_and_the_next_build_takes_another_base(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    ec2 = ec2_client(ec2_env)
    raw = spec(stable_after="0s")
    raw["timeOuts"]["expiresIn"] = "48h"
    pb = Builder(hook, raw)
    pb.sync()
    assert pb.answer["status"]["lastRunBaseImageID"] == NEWEST_EKS_130_X86
    a1 = pb.build(ec2_env)
    assert tags_of(ec2, a1)["base-ami"] == NEWEST_EKS_130_X86

    clock.now += timedelta(seconds=10)
    answer = pb.edit(revokeBase=[NEWEST_EKS_130_X86])

    assert tags_of(ec2, a1)["status"] == "revoked"
    assert state(ec2, a1) == "disabled"
    assert parameters(ec2_env) == {}
    assert pb.conditions()["Revoked"]["reason"] == "NothingToFallBackTo"
    # The filters' newest match is revoked: the build starts at once from the newest one that is not.
    assert answer["status"]["state"] == "JobCreation"
    assert answer["status"]["lastRunBaseImageID"] == PREVIOUS_EKS_130_X86
    a2 = pb.build(ec2_env)
    assert tags_of(ec2, a2)["base-ami"] == PREVIOUS_EKS_130_X86
    assert tags_of(ec2, a2)["status"] == "active"
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a2}


def test_a_base_parameter_naming_a_revoked_base_builds_nothing(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    ssm = boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)
    ssm.put_parameter(Name=BASE_PARAMETER, Value=NEWEST_EKS_130_X86, Type="String")
    raw = spec()
    del raw["amiFilters"]
    raw["baseImage"] = {"ssmParameter": BASE_PARAMETER}
    raw["release"] = {"revokeBase": [NEWEST_EKS_130_X86]}
    pb = Builder(hook, raw)

    answer = pb.sync()

    assert answer["status"]["state"] == "BaseImageNotFound"
    assert answer["children"] == []
    problem = pb.conditions()["BaseImageRevoked"]
    assert NEWEST_EKS_130_X86 in problem["message"]
    assert "spec.release.revokeBase" in problem["message"]

    # The parameter moves on to a base that is not revoked: the build starts.
    ssm.put_parameter(Name=BASE_PARAMETER, Value=PREVIOUS_EKS_130_X86, Type="String", Overwrite=True)
    clock.now += timedelta(seconds=10)
    answer = pb.sync()
    assert answer["status"]["state"] == "JobCreation"
    assert answer["status"]["lastRunBaseImageID"] == PREVIOUS_EKS_130_X86
    assert "BaseImageRevoked" not in pb.conditions()


def test_a_rebuild_token_is_honoured_once_even_when_replayed_or_the_status_lags(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    raw = spec()
    raw["timeOuts"]["expiresIn"] = "48h"
    pb = Builder(hook, raw)
    pb.sync()
    a1 = pb.build(ec2_env)
    before = copy.deepcopy(pb.status)

    clock.now += timedelta(seconds=10)
    pb.raw["release"] = {"rebuild": "2026-12-07-cve-fix"}
    pb.generation += 1
    asked = pb.body()
    answer = pb.sync()
    assert answer["status"]["state"] == "JobCreation"
    assert answer["status"]["lastRebuild"] == "2026-12-07-cve-fix"
    job = pb.building()

    # Metacontroller sends the same request again: the same Job, not a second one.
    code, replayed = post(f"{hook.url}/sync", asked)
    assert code == 200
    assert replayed["status"]["jobName"] == job
    assert [c["metadata"]["name"] for c in replayed["children"]] == [
        c["metadata"]["name"] for c in answer["children"]
    ]

    # The status lags one answer behind while the build runs (rule 8): the token's build is still known.
    pb.status = before
    pb.jobs[job] = running(pb.jobs[job], clock.now)
    assert pb.sync()["status"]["state"] == "JobRunning"
    assert pb.answer["status"]["lastRebuild"] == "2026-12-07-cve-fix"

    # It still lags when the build's AMI arrives: recorded, and nothing is built again.
    pb.status = before
    clock.now += timedelta(minutes=10)
    a2 = pb.build(ec2_env)
    assert a2 != a1
    assert pb.answer["status"]["state"] == "AMICreated"
    assert pb.answer["status"]["lastRebuild"] == "2026-12-07-cve-fix"
    hook.restart()
    clock.now += timedelta(seconds=10)
    assert pb.sync()["status"]["state"] == "AMICreated"
    assert [c["metadata"]["name"] for c in pb.answer["children"]] == [job]
    assert pb.answer["status"]["lastRebuild"] == "2026-12-07-cve-fix"

    # Another spec edit leaves the token honoured; a new value asks for one more build.
    pb.edit(pin={"stable": a1})
    assert pb.answer["status"]["state"] == "AMICreated"
    pb.edit(rebuild="2026-12-08-again")
    assert pb.answer["status"]["state"] == "JobCreation"
    assert pb.answer["status"]["lastRebuild"] == "2026-12-08-again"


def exists(client: "EC2Client", image_id: str) -> bool:
    found = client.describe_images(Filters=[{"Name": "image-id", "Values": [image_id]}], IncludeDisabled=True)
    return bool(found["Images"])


def test_retention_keeps_what_a_channel_holds_brings_a_pinned_ami_back_and_removes_revoked_ones_first(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    ec2 = ec2_client(ec2_env)
    raw = spec(stable_after="60s", retention={"keep": 1, "disableFor": "1h", "skipInUse": False})
    raw["timeOuts"]["expiresIn"] = "48h"
    pb = Builder(hook, raw)
    t0 = clock.now
    pb.sync()
    a1 = pb.build(ec2_env)
    clock.now = t0 + timedelta(seconds=60)
    pb.sync()
    clock.now = t0 + timedelta(seconds=70)
    pb.edit(rebuild="2")
    a2 = pb.build(ec2_env)
    # keep 1, but stable still holds build 1: it stays launchable.
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a1}
    assert state(ec2, a1) == "available"

    clock.now = t0 + timedelta(seconds=130)
    pb.sync()
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a2}
    pb.sync()
    assert state(ec2, a1) == "disabled"  # nothing holds it: beyond keep, disabled first

    # Roll stable back to it: enabled again before it is published, no complaint about the pin.
    clock.now = t0 + timedelta(seconds=140)
    pb.edit(pin={"stable": a1})
    assert state(ec2, a1) == "available"
    assert "ReleaseInvalid" not in pb.conditions()
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a1}
    assert pb.channels()[1] == entry("stable", a1, clock.now, pinned=True)

    # Revoke build 2: removed first, once its removal clock (disableFor) has run, although it is the newest.
    clock.now = t0 + timedelta(seconds=150)
    pb.edit(revoke=[a2])
    assert parameters(ec2_env) == {WEB: a1, CANARY: a1, STABLE: a1}
    a3 = pb.build(ec2_env)
    assert parameters(ec2_env) == {WEB: a3, CANARY: a3, STABLE: a1}
    assert state(ec2, a2) == "disabled"
    assert a2 in pb.conditions()["RetentionPending"]["message"]
    clock.now += timedelta(hours=1, seconds=1)
    pb.sync()
    assert not exists(ec2, a2)
    assert exists(ec2, a1)  # pinned
    assert exists(ec2, a3)


def test_retention_keeps_the_builds_soaking_for_the_next_channel_so_a_short_cadence_never_starves_it(
    hook: Hook, clock: Clock, ec2_env: str
) -> None:
    """keep 1 and a build every 60 s, stable `after` 120 s: each build leaves canary before it has soaked
    there; retention must not remove it before stable has had its chance."""
    ec2 = ec2_client(ec2_env)
    pb = Builder(hook, spec(retention={"keep": 1, "skipInUse": False}))
    t0 = clock.now
    pb.sync()
    a1 = pb.build(ec2_env)
    clock.now = t0 + timedelta(seconds=61)
    pb.sync()
    clock.now = t0 + timedelta(seconds=70)
    a2 = pb.build(ec2_env)
    pb.sync()
    assert exists(ec2, a1)  # waiting for stable, in no channel now
    clock.now = t0 + timedelta(seconds=120)
    pb.sync()
    assert parameters(ec2_env) == {WEB: a2, CANARY: a2, STABLE: a1}
    clock.now = t0 + timedelta(seconds=131)
    pb.sync()
    clock.now = t0 + timedelta(seconds=140)
    a3 = pb.build(ec2_env)
    pb.sync()
    assert exists(ec2, a2)
    clock.now = t0 + timedelta(seconds=190)
    pb.sync()
    assert parameters(ec2_env) == {WEB: a3, CANARY: a3, STABLE: a2}
    pb.sync()
    assert not exists(ec2, a1)  # stable moved on: a1 is only old now


def test_channels_publish_every_architecture_and_show_x86_64_first(hook: Hook, ec2_env: str) -> None:
    ec2 = ec2_client(ec2_env)
    pb = Builder(hook, spec(stable_after="0s"))
    pb.sync()
    x86 = register_built_ami(ec2, "web-x86")
    arm = register_built_ami(ec2, "web-arm", base_image_id=ARM64_EKS_130)

    pb.finish((REGION, arm), (REGION, x86))  # Packer reports them in any order

    every = {WEB: x86, CANARY: x86, STABLE: x86}
    every |= {f"{name}/x86_64": x86 for name in (WEB, CANARY, STABLE)}
    every |= {f"{name}/arm64": arm for name in (WEB, CANARY, STABLE)}
    assert parameters(ec2_env) == every
    assert [c["imageID"] for c in pb.channels()] == [x86, x86]
    assert tags_of(ec2, arm)[CANARY_TAG] == tags_of(ec2, x86)[CANARY_TAG]

    # A pin names either AMI of the build: the channel holds the build, both architectures.
    pb.edit(pin={"stable": arm})
    assert pb.channels()[1]["imageID"] == x86
    assert pb.channels()[1]["pinned"] is True
    assert "ReleaseInvalid" not in pb.conditions()
