"""Issue 7 in the pure core: base image from SSM, rebuild on a new base, build windows, suspend, provenance."""

import copy
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.core.base_image import BaseImageMissing
from app.core.decide import decide
from app.core.decision import Decision
from app.core.facts import AmiFacts
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.tags import Image, format_timestamp
from tests.builders import (
    T0,
    base_image,
    build_pod,
    failed,
    managed_image,
    parent,
    request,
    running,
    succeeded,
    tagging,
)
from tests.seed import SEED_SPEC

OLD_BASE = "ami-0base0000000000001"
NEW_BASE = "ami-0base0000000000002"
CURRENT = "ami-0cur0000000000001"
BUILT = "ami-0b1a2b3c4d5e6f708"
PARAMETER = "/aws/service/eks/optimized-ami/1.30/amazon-linux-2023/x86_64/standard/recommended/image_id"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


def spec_with(**fields: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SEED_SPEC)
    for key, value in fields.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return spec


def ssm_spec(**fields: Any) -> dict[str, Any]:
    return spec_with(amiFilters=None, baseImage={"ssmParameter": PARAMETER}, **fields)


def sync(req: dict[str, Any], facts: AmiFacts, now: datetime = T0) -> tuple[dict[str, Any], Decision]:
    decision = decide(world_of(HookRequest.model_validate(req)), facts, now)
    return json.loads(json.dumps(_response(decision))), decision


def conditions(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in body["status"]["conditions"]}


def current_ami(built_on: str = OLD_BASE, age: timedelta = timedelta(hours=6)) -> Image:
    """The builder's active AMI, built `age` ago on `built_on`, expiring after the seed's 48 h."""
    return managed_image(CURRENT, T0 - age, extra={"base-ami": built_on})


def newer_base(age: timedelta = timedelta(days=2)) -> Image:
    return base_image(NEW_BASE, T0 - age)


def ready_status(spec: dict[str, Any]) -> dict[str, Any]:
    """The status of a builder whose current AMI was built by the hook (a later sync sees it recorded)."""
    body, _ = sync(request(parent(spec)), AmiFacts(managed=(current_ami(),), base_image=base_image(OLD_BASE)))
    return dict(body["status"])


# -- 1. base image from an SSM parameter -------------------------------------------------------------------


def test_parameter_names_the_base_of_the_build() -> None:
    body, _ = sync(request(parent(ssm_spec())), AmiFacts(base_image=base_image(NEW_BASE)))
    (job,) = body["children"]
    assert body["status"]["lastRunBaseImageID"] == NEW_BASE
    assert job["metadata"]["annotations"]["ami.refresh.ops/base-ami"] == NEW_BASE
    assert f"-var ami_id={NEW_BASE} -var region=us-west-2" in body["status"]["command"]


@pytest.mark.parametrize(
    "reason",
    [
        f"SSM parameter {PARAMETER} does not exist in us-west-2",
        f"SSM parameter {PARAMETER} holds 'latest', which is not an AMI id",
        f"SSM parameter {PARAMETER} names ami-0123456789abcdef0, which does not exist in us-west-2",
    ],
)
def test_parameter_without_a_usable_ami_is_base_image_not_found(reason: str) -> None:
    body, _ = sync(request(parent(ssm_spec())), AmiFacts(base_image=BaseImageMissing(reason)))
    assert body["children"] == []
    assert body["status"]["state"] == "BaseImageNotFound"
    assert conditions(body)["BaseImageNotFound"]["message"] == reason


def test_filters_and_parameter_together_are_an_invalid_spec_naming_both() -> None:
    spec = spec_with(baseImage={"ssmParameter": PARAMETER})
    body, _ = sync(request(parent(spec)), AmiFacts())
    message = conditions(body)["InvalidSpec"]["message"]
    assert body["status"]["state"] == "InvalidSpec"
    assert body["children"] == []
    assert "spec.amiFilters" in message
    assert "spec.baseImage" in message


# -- 2. rebuild on a new base ------------------------------------------------------------------------------


def test_newer_base_is_reported_but_not_built_by_default() -> None:
    spec = spec_with()
    body, decision = sync(
        request(parent(spec, status=ready_status(spec))),
        AmiFacts(managed=(current_ami(),), base_image=newer_base()),
    )
    assert decision.resync_seconds == 300
    outdated = conditions(body)["BaseImageOutdated"]
    assert body["children"] == []
    assert conditions(body)["Ready"]["status"] == "True"
    assert outdated["status"] == "True"
    assert outdated["reason"] == "NewerBaseImage"
    assert CURRENT in outdated["message"]
    assert OLD_BASE in outdated["message"]
    assert NEW_BASE in outdated["message"]
    assert "onBaseImageChange is off" in outdated["message"]
    assert outdated["lastTransitionTime"] == format_timestamp(T0 - timedelta(days=2))  # the base's creation


def test_current_base_is_a_false_condition() -> None:
    spec = spec_with()
    body, _ = sync(
        request(parent(spec, status=ready_status(spec))),
        AmiFacts(managed=(current_ami(),), base_image=base_image(OLD_BASE)),
    )
    outdated = conditions(body)["BaseImageOutdated"]
    assert (outdated["status"], outdated["reason"]) == ("False", "BaseImageCurrent")


def test_an_ami_without_base_ami_tag_is_not_judged() -> None:
    untagged = managed_image(CURRENT, T0 - timedelta(hours=6))
    body, _ = sync(request(parent()), AmiFacts(managed=(untagged,), base_image=newer_base()))
    assert "BaseImageOutdated" not in conditions(body)


def test_rebuild_on_a_soaked_newer_base_starts_a_build_while_the_ami_stays_ready() -> None:
    spec = spec_with(rebuild={"onBaseImageChange": True, "minBaseImageAge": "24h"})
    body, decision = sync(
        request(parent(spec, status=ready_status(spec))),
        AmiFacts(managed=(current_ami(),), base_image=newer_base(timedelta(days=2))),
    )
    (job,) = body["children"]
    assert job["metadata"]["annotations"]["ami.refresh.ops/base-ami"] == NEW_BASE
    assert job["metadata"]["annotations"]["ami.refresh.ops/replaces-ami"] == CURRENT
    assert body["status"]["state"] == "JobCreation"
    assert conditions(body)["Ready"]["status"] == "True"  # the current AMI stays active until replaced
    assert conditions(body)["BaseImageOutdated"]["message"].endswith("a rebuild is due")
    assert decision.effects == ()


def test_a_soaking_base_waits_and_wakes_the_builder_when_the_soak_ends() -> None:
    spec = spec_with(rebuild={"onBaseImageChange": True, "minBaseImageAge": "24h"})
    base = newer_base(timedelta(hours=20))
    body, decision = sync(
        request(parent(spec, status=ready_status(spec))), AmiFacts(managed=(current_ami(),), base_image=base)
    )
    soaked = T0 + timedelta(hours=4)
    assert body["children"] == []
    assert (
        f"once it has soaked, at {format_timestamp(soaked)}"
        in conditions(body)["BaseImageOutdated"]["message"]
    )
    assert body["status"]["nextBuildTime"] == format_timestamp(soaked)
    assert decision.resync_seconds == 300  # the controller timer is sooner

    _, at_the_end = sync(
        request(parent(spec, status=body["status"])),
        AmiFacts(managed=(current_ami(),), base_image=base),
        now=soaked - timedelta(seconds=90),
    )
    assert at_the_end.resync_seconds == 90


def test_a_rebuild_that_fails_counts_against_max_number_of_jobs() -> None:
    spec = spec_with(rebuild={"onBaseImageChange": True}, maxNumberOfJobs=1)
    facts = AmiFacts(managed=(current_ami(),), base_image=newer_base())
    body, _ = sync(request(parent(spec, status=ready_status(spec))), facts)
    (job,) = body["children"]
    later = T0 + timedelta(hours=1)
    after, _ = sync(request(parent(spec, status=body["status"]), [failed(job)]), facts, now=later)
    assert after["status"]["state"] == "MaxFailedJobsReached"
    assert after["status"]["failedJobCount"] == 1
    assert conditions(after)["Ready"]["status"] == "True"
    assert [c["metadata"]["name"] for c in after["children"]] == [job["metadata"]["name"]]


def test_the_rebuilt_ami_becomes_current_and_the_old_one_is_deprecated() -> None:
    spec = spec_with(rebuild={"onBaseImageChange": True})
    facts = AmiFacts(managed=(current_ami(),), base_image=newer_base())
    body, _ = sync(request(parent(spec, status=ready_status(spec))), facts)
    (job,) = body["children"]
    done = succeeded(job, T0, T0 + timedelta(minutes=20))
    image = Image(BUILT, "available", T0 + timedelta(minutes=19), "opsy-built")
    after, decision = sync(
        request(parent(spec, status=body["status"]), [done], [build_pod(done, f"us-west-2:{BUILT}")]),
        AmiFacts(managed=(current_ami(),), base_image=newer_base(), built=(image,)),
        now=T0 + timedelta(minutes=30),
    )
    tag, retire = tagging(decision)
    assert dict(tag.tags)["base-ami"] == NEW_BASE
    assert retire.image_ids == (CURRENT,)
    assert after["status"]["lastRunBuiltImageID"] == BUILT
    assert conditions(after)["BaseImageOutdated"]["status"] == "False"


# -- 3. build windows --------------------------------------------------------------------------------------

NIGHTLY = "0 2 * * *"


def test_a_new_builder_waits_for_the_first_tick_after_it_was_created() -> None:
    spec = spec_with(schedule=NIGHTLY)
    fresh = parent(spec)
    fresh["metadata"]["creationTimestamp"] = format_timestamp(T0 - timedelta(minutes=1))
    body, decision = sync(request(fresh), AmiFacts(base_image=base_image()))
    assert body["children"] == []
    assert body["status"]["state"] == "Scheduled"
    assert body["status"]["nextBuildTime"] == "2026-11-21T02:00:00Z"
    scheduled = conditions(body)["Scheduled"]
    assert scheduled["reason"] == "WaitingForWindow"
    assert "2026-11-21T02:00:00Z" in scheduled["message"]
    assert decision.resync_seconds == 300

    # Created on 2026-11-01: its first window (2026-11-02T02:00Z) has passed by T0, so it builds at once.
    body, _ = sync(request(parent(spec)), AmiFacts(base_image=base_image()))
    assert len(body["children"]) == 1


def test_an_expired_ami_is_rebuilt_at_the_first_tick_after_its_expiry() -> None:
    spec = spec_with(schedule="0 2 * * 1-5", timeZone="Europe/Berlin")
    expired = managed_image(CURRENT, T0 - timedelta(hours=49))  # expired at T0 - 1 h, a Friday 11:00 UTC
    facts = AmiFacts(managed=(expired,), base_image=base_image())
    body, decision = sync(request(parent(spec, status=ready_status(spec))), facts)
    monday = datetime(2026, 11, 23, 1, 0, tzinfo=T0.tzinfo)  # 02:00 in Berlin
    assert body["children"] == []
    assert conditions(body)["Ready"]["reason"] == "AMIExpired"
    assert body["status"]["nextBuildTime"] == format_timestamp(monday)

    near, decision = sync(
        request(parent(spec, status=body["status"])), facts, now=monday - timedelta(seconds=42)
    )
    assert decision.resync_seconds == 42
    at_tick, _ = sync(request(parent(spec, status=near["status"])), facts, now=monday)
    assert len(at_tick["children"]) == 1
    assert at_tick["status"]["state"] == "JobCreation"
    assert "Scheduled" not in conditions(at_tick)


def test_a_soaked_base_waits_for_the_window_too() -> None:
    spec = spec_with(schedule=NIGHTLY, rebuild={"onBaseImageChange": True, "minBaseImageAge": "1h"})
    base = newer_base(timedelta(minutes=30))  # soaked at T0 + 30 min
    body, _ = sync(
        request(parent(spec, status=ready_status(spec))), AmiFacts(managed=(current_ami(),), base_image=base)
    )
    assert body["status"]["nextBuildTime"] == "2026-11-21T02:00:00Z"
    later, _ = sync(
        request(parent(spec, status=body["status"])),
        AmiFacts(managed=(current_ami(),), base_image=base),
        now=T0 + timedelta(hours=1),
    )
    assert later["children"] == []
    assert later["status"]["state"] == "Scheduled"
    assert conditions(later)["Ready"]["status"] == "True"


def test_a_retry_is_not_held_back_by_the_window() -> None:
    spec = spec_with(schedule=NIGHTLY)
    body, _ = sync(request(parent(spec)), AmiFacts(base_image=base_image()))
    (job,) = body["children"]
    later = T0 + timedelta(hours=3)
    after, _ = sync(
        request(parent(spec, status=body["status"]), [failed(job, T0, T0 + timedelta(minutes=5))]),
        AmiFacts(base_image=base_image()),
        now=later,
    )
    names = [c["metadata"]["name"] for c in after["children"]]
    assert len(names) == 2
    assert after["status"]["state"] == "JobCreation"
    assert after["status"]["failedJobCount"] == 1


def test_a_scheduled_answer_is_byte_identical_on_replay() -> None:
    fresh = parent(spec_with(schedule=NIGHTLY))
    fresh["metadata"]["creationTimestamp"] = format_timestamp(T0 - timedelta(minutes=1))
    req = request(fresh)
    first, _ = sync(req, AmiFacts(base_image=base_image()))
    again, _ = sync(req, AmiFacts(base_image=base_image()), now=T0 + timedelta(seconds=7))
    assert json.dumps(first, sort_keys=True) == json.dumps(again, sort_keys=True)


# -- 4. suspend --------------------------------------------------------------------------------------------


def test_a_suspended_builder_starts_no_build() -> None:
    body, decision = sync(request(parent(spec_with(suspend=True))), AmiFacts(base_image=base_image()))
    assert body["children"] == []
    assert decision.resync_seconds == 300  # the controller timer: resuming is a spec change anyway
    assert body["status"]["state"] == "Suspended"
    assert conditions(body)["Suspended"]["status"] == "True"
    assert conditions(body)["Ready"]["status"] == "False"


def test_a_suspended_builder_keeps_its_running_job_and_tags_what_it_built() -> None:
    body, _ = sync(request(parent()), AmiFacts(base_image=base_image()))
    (job,) = body["children"]
    suspended = spec_with(suspend=True)
    during, _ = sync(
        request(parent(suspended, status=body["status"], generation=2), [running(job)]), AmiFacts()
    )
    assert [c["metadata"]["name"] for c in during["children"]] == [job["metadata"]["name"]]
    assert during["status"]["state"] == "JobRunning"
    assert conditions(during)["Suspended"]["status"] == "True"

    done = succeeded(job, T0, T0 + timedelta(minutes=20))
    image = Image(BUILT, "available", T0 + timedelta(minutes=19), "opsy-built")
    after, decision = sync(
        request(
            parent(suspended, status=during["status"], generation=2),
            [done],
            [build_pod(done, f"us-west-2:{BUILT}")],
        ),
        AmiFacts(built=(image,)),
        now=T0 + timedelta(minutes=30),
    )
    assert [effect.image_ids for effect in tagging(decision)] == [(BUILT,)]
    assert after["status"]["lastRunBuiltImageID"] == BUILT
    assert conditions(after)["Ready"]["status"] == "True"


def test_a_suspended_builder_does_not_retry() -> None:
    body, _ = sync(request(parent()), AmiFacts(base_image=base_image()))
    (job,) = body["children"]
    spec = spec_with(suspend=True)
    after, _ = sync(
        request(parent(spec, status=body["status"]), [failed(job)]),
        AmiFacts(base_image=base_image()),
        now=T0 + timedelta(hours=3),
    )
    assert [c["metadata"]["name"] for c in after["children"]] == [job["metadata"]["name"]]  # kept for logs
    assert after["status"]["state"] == "Suspended"
    assert after["status"]["failedJobCount"] == 1


def test_a_suspended_builder_still_adopts_and_reports_expiry() -> None:
    spec = spec_with(suspend=True)
    adopted, _ = sync(
        request(parent(spec)), AmiFacts(managed=(current_ami(),), base_image=base_image(OLD_BASE))
    )
    assert adopted["status"]["state"] == "AMIAdopted"
    assert conditions(adopted)["Ready"]["status"] == "True"
    assert "nextBuildTime" not in adopted["status"]
    expired = managed_image(CURRENT, T0 - timedelta(hours=49))
    later, _ = sync(
        request(parent(spec, status=adopted["status"])), AmiFacts(managed=(expired,), base_image=base_image())
    )
    assert conditions(later)["Ready"]["reason"] == "AMIExpired"
    assert later["status"]["state"] == "Suspended"


@pytest.mark.parametrize(("schedule", "builds"), [(None, True), (NIGHTLY, False)])
def test_resuming_builds_at_once_or_at_the_next_window(schedule: str | None, builds: bool) -> None:
    expired = managed_image(CURRENT, T0 - timedelta(days=5))  # a missed window days ago is not made up
    facts = AmiFacts(managed=(expired,), base_image=base_image())
    suspended, _ = sync(request(parent(spec_with(suspend=True, schedule=schedule))), facts)
    resumed, _ = sync(
        request(parent(spec_with(schedule=schedule), status=suspended["status"], generation=2)), facts
    )
    assert bool(resumed["children"]) is builds
    if not builds:
        assert resumed["status"]["nextBuildTime"] == "2026-11-21T02:00:00Z"
        again, _ = sync(
            request(parent(spec_with(schedule=schedule), status=resumed["status"], generation=2)),
            facts,
            now=T0 + timedelta(minutes=5),
        )
        assert again["children"] == []
        assert again["status"]["nextBuildTime"] == "2026-11-21T02:00:00Z"


# -- 5. commit provenance ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "commit"),
    [
        (f"us-west-2:{BUILT}\ncommit={SHA}", SHA),
        (f"us-west-2:{BUILT}", ""),  # an older image's one-line message
        (f"us-west-2:{BUILT}\ncommit=not-a-sha", ""),
    ],
)
def test_the_reported_commit_is_tagged_and_recorded(message: str, commit: str) -> None:
    body, _ = sync(request(parent()), AmiFacts(base_image=base_image()))
    (job,) = body["children"]
    done = succeeded(job, T0, T0 + timedelta(minutes=20))
    image = Image(BUILT, "available", T0 + timedelta(minutes=19), "opsy-built")
    after, decision = sync(
        request(parent(status=body["status"]), [done], [build_pod(done, message)]),
        AmiFacts(base_image=base_image(), built=(image,)),
        now=T0 + timedelta(minutes=30),
    )
    tags = dict(tagging(decision)[0].tags)
    assert after["status"]["lastRunBuiltImageID"] == BUILT
    if commit:
        assert tags["packer-repo-commit"] == commit
        assert after["status"]["lastRunCommit"] == commit
        assert f"at commit {commit[:12]}" in after["status"]["lastRunMessage"]
    else:
        assert "packer-repo-commit" not in tags
        assert "lastRunCommit" not in after["status"]


@pytest.mark.parametrize(
    ("gone_for", "restarted"), [(timedelta(seconds=20), True), (timedelta(minutes=10), False)]
)
def test_a_running_job_deleted_while_suspended_does_not_restart(gone_for: timedelta, restarted: bool) -> None:
    body, _ = sync(request(parent()), AmiFacts(base_image=base_image()))
    (job,) = body["children"]
    body["status"]["lastRun"] = format_timestamp(T0)  # the Job was asked for at T0
    suspended = spec_with(suspend=True)
    # The request no longer shows the Job: just created (cache lag, ask again) or deleted by hand (do not).
    after, _ = sync(
        request(parent(suspended, status=body["status"], generation=2)),
        AmiFacts(base_image=base_image()),
        now=T0 + gone_for,
    )
    assert [c["metadata"]["name"] for c in after["children"]] == (
        [job["metadata"]["name"]] if restarted else []
    )
    if not restarted:
        assert after["status"]["state"] == "Suspended"
        assert "jobStatus" not in after["status"]
        assert "deleted while suspended" in after["status"]["lastRunMessage"]
        again, _ = sync(
            request(parent(suspended, status=after["status"], generation=2)),
            AmiFacts(base_image=base_image()),
            now=T0 + gone_for + timedelta(minutes=5),
        )
        assert again["children"] == []
        assert again["status"] == after["status"] | {"conditions": again["status"]["conditions"]}
