"""The pure reconcile core: every numbered behaviour of the sync hook and every DESIGN.md contract rule."""

import copy
import json
from datetime import timedelta
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from app.core.base_image import BaseImageMissing
from app.core.children import as_desired
from app.core.decide import decide, decide_finalize
from app.core.decision import Decision
from app.core.effects import TagImages
from app.core.facts import AmiFacts, AwsFault
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.tags import Image
from tests.builders import (
    NAME,
    T0,
    base_image,
    build_pod,
    deleting,
    failed,
    managed_image,
    observed,
    parent,
    request,
    running,
    succeeded,
    tagging,
)
from tests.seed import SEED_SPEC

BASE = base_image()
FACTS = AmiFacts(base_image=BASE)
BUILT = "ami-0b1a2b3c4d5e6f708"


def sync(req: dict[str, Any], facts: AmiFacts = FACTS, now: Any = T0) -> tuple[dict[str, Any], Decision]:
    decision = decide(world_of(HookRequest.model_validate(req)), facts, now)
    return json.loads(json.dumps(_response(decision))), decision


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


def first_build() -> tuple[dict[str, Any], dict[str, Any]]:
    """The response to a brand-new builder, and its one Job."""
    body, _ = sync(request(parent()))
    assert len(body["children"]) == 1
    return body, body["children"][0]


def built_image(job: dict[str, Any], tags: dict[str, str] | None = None, state: str = "available") -> Image:
    return Image(BUILT, state, T0 + timedelta(minutes=20), "opsy-built", tags or {})


# -- item 2: a new builder gets exactly one Job -------------------------------------------------------------------


def test_new_builder_gets_one_job_on_the_newest_base_ami() -> None:
    body, job = first_build()
    status = body["status"]
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == status["jobName"]
    assert status["jobStatus"] == "running"
    assert status["lastRunBaseImageID"] == BASE.image_id
    assert f"-var ami_id={BASE.image_id} -var region=us-west-2" in status["command"]
    assert status["failedJobCount"] == 0
    assert condition(body, "Ready")["status"] == "False"
    assert body["resyncAfterSeconds"] <= 60


def test_no_filters_means_a_self_contained_build_without_vars() -> None:
    spec = copy.deepcopy(SEED_SPEC)
    spec.pop("amiFilters")
    body, _ = sync(request(parent(spec)), AmiFacts())
    assert len(body["children"]) == 1
    assert "ami_id" not in body["status"]["command"]
    assert "lastRunBaseImageID" not in body["status"]


def test_no_matching_base_ami_is_a_condition_and_no_job() -> None:
    missing = BaseImageMissing("No AMI in us-west-2 matches owner-id=602401143452")
    body, _ = sync(request(parent()), AmiFacts(base_image=missing))
    assert body["children"] == []
    assert body["status"]["state"] == "BaseImageNotFound"
    assert condition(body, "BaseImageNotFound")["status"] == "True"
    assert condition(body, "BaseImageNotFound")["message"] == missing.reason


# -- rule 3: determinism ------------------------------------------------------------------------------------------


def test_same_request_and_facts_give_byte_identical_json() -> None:
    req = request(parent())
    first = json.dumps(sync(req)[0])
    assert json.dumps(sync(copy.deepcopy(req))[0]) == first


def test_a_replayed_request_gives_the_same_answer_whenever_it_arrives() -> None:
    """Times in the answer come from the objects (creation, Job start, AMI expiry), not the second it arrived."""
    body, job = first_build()
    replays = [
        request(parent()),
        request(parent(status=body["status"]), [running(job)]),
        request(parent(), [running(job)]),
    ]
    for replay in replays:
        answers = {json.dumps(sync(replay, now=T0 + timedelta(seconds=s))[0]) for s in (1, 2, 59)}
        assert len(answers) == 1, replay


def test_status_stops_changing_once_written_back() -> None:
    body, job = first_build()
    later = T0 + timedelta(minutes=3)
    again, _ = sync(request(parent(status=body["status"]), [running(job)]), now=later)
    third, _ = sync(request(parent(status=again["status"]), [running(job)]), now=later + timedelta(minutes=1))
    assert third["status"] == again["status"]
    assert third["children"] == again["children"]


# -- item 4 and rules 1, 8: running Jobs are followed, stale input converges on one name -----------------------


def test_running_job_is_returned_unchanged_with_status_running() -> None:
    body, job = first_build()
    again, _ = sync(request(parent(status=body["status"]), [running(job)]))
    assert again["children"] == [job]
    assert again["status"]["jobStatus"] == "running"
    assert again["status"]["state"] == "JobRunning"


@pytest.mark.parametrize("recorded", [None, {}, {"jobName": "someone-elses-job", "jobStatus": "completed"}])
def test_running_job_is_discovered_from_its_labels_when_status_is_empty_or_stale(recorded: Any) -> None:
    body, job = first_build()
    again, _ = sync(request(parent(status=recorded), [running(job)]))
    assert again["children"] == [job]
    for key in ("jobName", "jobID", "buildID", "lastRunBaseImageID", "command"):
        assert again["status"][key] == body["status"][key]
    assert again["status"]["jobStatus"] == "running"


def test_running_job_survives_even_when_ec2_has_no_base_image_anymore() -> None:
    body, job = first_build()
    again, _ = sync(request(parent(status=body["status"]), [running(job)]), AmiFacts())
    assert again["children"] == [job]


def test_stale_children_lead_to_the_same_job_name() -> None:
    body, job = first_build()
    again, _ = sync(request(parent(status=body["status"])))  # the Job is not in the cache yet
    assert again["children"] == [job]


def test_stale_children_with_a_newer_base_ami_still_keep_the_same_job() -> None:
    body, job = first_build()
    newer = AmiFacts(base_image=base_image("ami-0base0000000000002", T0))
    again, _ = sync(request(parent(status=body["status"])), newer)
    assert [c["metadata"]["name"] for c in again["children"]] == [job["metadata"]["name"]]


def test_stale_status_leads_to_the_same_job_name() -> None:
    _, job = first_build()
    again, _ = sync(request(parent()), now=T0 + timedelta(seconds=40))
    assert again["children"] == [job]


@pytest.mark.parametrize("v2", [False, True])
def test_v1_and_v2_child_keys(v2: bool) -> None:
    body, job = first_build()
    again, _ = sync(request(parent(status=body["status"]), [running(job)], v2_keys=v2))
    assert again["children"] == [job]


# -- item 5: success, tagging, record first ---------------------------------------------------------------------


def succeeded_sync(
    status: dict[str, Any], job: dict[str, Any], image: Image, managed: tuple[Image, ...] = ()
) -> tuple[dict[str, Any], Decision]:
    done = succeeded(job)
    pod = build_pod(done, f"us-west-2:{BUILT}")
    return sync(
        request(parent(status=status), [done], [pod]),
        AmiFacts(managed=managed, base_image=BASE, built=(image,)),
        now=T0 + timedelta(minutes=30),
    )


def test_success_tags_the_ami_and_records_it_before_letting_the_job_go() -> None:
    body, job = first_build()
    old = managed_image("ami-0old0000000000001", T0 - timedelta(days=3))
    after, decision = succeeded_sync(body["status"], job, built_image(job), (old,))
    status = after["status"]
    assert status["jobStatus"] == "completed"
    assert status["lastRunStatus"] == "completed"
    assert status["lastRunBuiltImageID"] == BUILT
    assert status["lastRunBaseImageID"] == BASE.image_id
    assert [c["metadata"]["name"] for c in after["children"]] == [job["metadata"]["name"]]  # rule 7
    tag, retire = tagging(decision)
    tags = dict(tag.tags)
    assert tag.image_ids == (BUILT,)
    assert tag.region == "us-west-2"
    assert tags["status"] == "active"
    assert tags["create-timestamp"] == "2026-11-20T12:25:00Z"  # the Job's completionTime
    assert tags["build-id"] == body["status"]["buildID"]
    assert tags["job-id"] == body["status"]["jobID"]
    assert tags["base-ami"] == BASE.image_id
    assert tags["brought-to-you-by"] == "opsy-the-ami-operator"
    assert tags["cluster-name"] == "opsy-gitops"
    assert tags["created-by"] == NAME
    assert tags["packer-repo"] == SEED_SPEC["builder"]["repoURL"]
    assert tags["packer-repo-branch"] == "main"
    assert retire == TagImages("us-west-2", ("ami-0old0000000000001",), (("status", "deprecated"),))


def test_job_stays_as_history_once_status_records_it_and_the_ami_is_tagged() -> None:
    body, job = first_build()
    recorded, decision = succeeded_sync(body["status"], job, built_image(job))
    tag = decision.effects[0]
    assert isinstance(tag, TagImages)
    tagged = built_image(job, dict(tag.tags))
    after, decision = succeeded_sync(recorded["status"], job, tagged, (tagged,))
    # successfulJobsHistoryLimit defaults to 1: the build that made the current AMI keeps its logs.
    assert [c["metadata"]["name"] for c in after["children"]] == [job["metadata"]["name"]]
    assert decision.effects == ()
    flight = condition(after, "FlightCheckFailed")
    assert flight["message"] == f"Latest Created AMI {BUILT} has not expired and is active"
    assert flight["reason"] == "FlightCheckFailed"
    assert condition(after, "Ready")["status"] == "True"


def test_ami_still_pending_waits_without_tagging() -> None:
    body, job = first_build()
    after, decision = succeeded_sync(body["status"], job, built_image(job, state="pending"))
    assert decision.effects == ()
    assert len(after["children"]) == 1
    assert after["status"]["state"] == "WaitingForImage"
    assert after["resyncAfterSeconds"] <= 30


def test_tagging_is_retried_while_the_job_is_kept() -> None:
    body, job = first_build()
    recorded, _ = succeeded_sync(body["status"], job, built_image(job))
    # The tag call failed last time: status says completed, EC2 shows no tags.
    again, decision = succeeded_sync(recorded["status"], job, built_image(job))
    assert len(again["children"]) == 1
    assert tagging(decision)[0].image_ids == (BUILT,)


def test_finished_job_deleted_by_someone_else_is_not_recreated() -> None:
    body, job = first_build()
    recorded, decision = succeeded_sync(body["status"], job, built_image(job))
    tagged = built_image(job, dict(tagging(decision)[0].tags))
    after, _ = sync(
        request(parent(status=recorded["status"])),
        AmiFacts(managed=(tagged,), base_image=BASE),
        now=T0 + timedelta(hours=1),
    )
    assert after["children"] == []


def test_recorded_failed_job_that_vanished_is_not_recreated() -> None:
    body, job = first_build()
    after_fail, _ = sync(request(parent(status=body["status"]), [failed(job)]), now=T0 + timedelta(minutes=6))
    later, _ = sync(request(parent(status=after_fail["status"])), now=T0 + timedelta(hours=2))
    names = [c["metadata"]["name"] for c in later["children"]]
    assert job["metadata"]["name"] not in names


# -- item 6: nothing to build while the AMI is fresh; expiry rebuilds ------------------------------------------


def test_active_ami_means_no_job_and_resync_no_later_than_expiry() -> None:
    fresh = managed_image(BUILT, T0 - timedelta(hours=47, minutes=58))
    body, _ = sync(request(parent()), AmiFacts(managed=(fresh,), base_image=BASE))
    assert body["children"] == []
    assert body["resyncAfterSeconds"] == 120


def test_controller_timer_bounds_resync() -> None:
    fresh = managed_image(BUILT, T0 - timedelta(hours=1))
    body, _ = sync(request(parent()), AmiFacts(managed=(fresh,), base_image=BASE))
    assert body["resyncAfterSeconds"] == 300


def test_expired_ami_triggers_a_new_build_with_a_new_name() -> None:
    body, job = first_build()
    recorded, decision = succeeded_sync(body["status"], job, built_image(job))
    tags = dict(tagging(decision)[0].tags)
    tagged = Image(BUILT, "available", T0, "opsy-built", tags)
    much_later = T0 + timedelta(hours=49)
    after, _ = sync(
        request(parent(status=recorded["status"])),
        AmiFacts(managed=(tagged,), base_image=BASE),
        now=much_later,
    )
    assert len(after["children"]) == 1
    assert after["children"][0]["metadata"]["name"] != job["metadata"]["name"]
    assert condition(after, "Ready")["reason"] == "AMIExpired"


# -- item 7: adoption -------------------------------------------------------------------------------------------


def test_existing_active_ami_is_adopted_without_touching_its_tags() -> None:
    existing = managed_image(
        "ami-0adopted000000001", T0 - timedelta(hours=10), extra={"base-ami": "ami-0base0000000000009"}
    )
    body, decision = sync(request(parent()), AmiFacts(managed=(existing,), base_image=BASE))
    assert body["children"] == []
    assert decision.effects == ()
    assert body["status"]["lastRunBuiltImageID"] == "ami-0adopted000000001"
    assert body["status"]["lastRunBaseImageID"] == "ami-0base0000000000009"
    assert body["status"]["state"] == "AMIAdopted"


@pytest.mark.parametrize(
    "image",
    [
        managed_image("ami-0x", T0 - timedelta(hours=49)),  # expired
        managed_image("ami-0x", T0 - timedelta(hours=1), status="deprecated"),
        managed_image("ami-0x", T0 - timedelta(hours=1), state="pending"),
    ],
)
def test_unusable_amis_are_not_adopted(image: Image) -> None:
    body, _ = sync(request(parent()), AmiFacts(managed=(image,), base_image=BASE))
    assert len(body["children"]) == 1


def test_expiry_falls_back_to_ec2_creation_date_without_the_tag() -> None:
    image = managed_image("ami-0x", T0 - timedelta(hours=1))
    untagged = Image(
        image.image_id,
        "available",
        T0 - timedelta(hours=50),
        "x",
        {k: v for k, v in image.tags.items() if k != "create-timestamp"},
    )
    body, _ = sync(request(parent()), AmiFacts(managed=(untagged,), base_image=BASE))
    assert len(body["children"]) == 1


# A tag "pinning" an AMI, a clock gone wrong: beyond the span of time the hook computes with, never a crash.
PAST_THE_CALENDAR = "9999-12-31T23:59:59-01:00"  # 10000-01-01T00:59:59Z once in UTC


@pytest.mark.parametrize("stamp", ["9999-12-31T00:00:00Z", PAST_THE_CALENDAR])
def test_an_ami_tagged_in_the_far_future_is_current_until_the_end_of_the_span(stamp: str) -> None:
    pinned = managed_image("ami-0pinned", T0, extra={"create-timestamp": stamp})
    body, decision = sync(request(parent()), AmiFacts(managed=(pinned,), base_image=BASE))
    assert body["children"] == []
    assert body["status"]["state"] == "AMIAdopted"
    ready = condition(body, "Ready")
    assert ready["status"] == "True"
    assert ready["message"] == "AMI ami-0pinned is active until 9000-01-03T00:00:00Z"
    assert body["status"]["nextBuildTime"] == "9000-01-03T00:00:00Z"
    assert 0 < body["resyncAfterSeconds"] <= 300
    assert decision.effects == ()


def test_jobs_with_times_past_the_calendar_are_followed_and_recorded() -> None:
    body, job = first_build()
    beyond = running(job)
    beyond["metadata"]["creationTimestamp"] = PAST_THE_CALENDAR
    beyond["status"]["startTime"] = PAST_THE_CALENDAR
    following, _ = sync(request(parent(status=body["status"]), [beyond]))
    assert following["children"] == [job]
    assert following["status"]["state"] == "JobRunning"

    done = succeeded(job)
    done["metadata"]["creationTimestamp"] = PAST_THE_CALENDAR
    done["status"]["completionTime"] = PAST_THE_CALENDAR
    recorded, decision = sync(
        request(parent(status=following["status"]), [done], [build_pod(done, f"us-west-2:{BUILT}")]),
        AmiFacts(base_image=BASE, built=(built_image(job),)),
    )
    assert recorded["status"]["jobStatus"] == "completed"
    (tag,) = tagging(decision)
    assert dict(tag.tags)["create-timestamp"] == "9000-01-01T00:00:00Z"


# -- item 8: failures, backoff and the limit ----------------------------------------------------------------------


def fail_once(status: dict[str, Any], job: dict[str, Any], now: Any) -> dict[str, Any]:
    body, _ = sync(request(parent(status=status), [failed(job)]), now=now)
    return body


def test_failed_job_counts_once_is_kept_and_retried_after_backoff() -> None:
    body, job = first_build()
    failed_at = T0 + timedelta(minutes=5)
    after = fail_once(body["status"], job, failed_at + timedelta(seconds=1))
    assert after["status"]["failedJobCount"] == 1
    assert after["status"]["jobStatus"] == "failed"
    assert after["children"] == [job]  # kept for inspection, no retry yet
    again = fail_once(after["status"], job, failed_at + timedelta(seconds=30))
    assert again["status"]["failedJobCount"] == 1
    assert again["children"] == [job]
    retry = fail_once(again["status"], job, failed_at + timedelta(seconds=61))
    names = sorted(c["metadata"]["name"] for c in retry["children"])
    assert len(names) == 2
    assert job["metadata"]["name"] in names
    assert retry["status"]["jobName"] != job["metadata"]["name"]
    assert retry["status"]["failedJobCount"] == 1


def test_backoff_doubles_and_the_limit_stops_builds_until_the_spec_changes() -> None:
    body, job = first_build()
    jobs: list[dict[str, Any]] = []
    now = T0
    status = body["status"]
    for attempt in range(3):
        finished_at = now + timedelta(minutes=5)
        jobs.append(failed(job, started=now, finished=finished_at))
        wait = 60 * 2**attempt
        during, _ = sync(request(parent(status=status), jobs), now=finished_at + timedelta(seconds=wait - 1))
        if attempt < 2:
            assert len(during["children"]) == len(jobs)
        now = finished_at + timedelta(seconds=wait)
        after, _ = sync(request(parent(status=during["status"]), jobs), now=now)
        status = after["status"]
        new = [
            c for c in after["children"] if c["metadata"]["name"] not in {j["metadata"]["name"] for j in jobs}
        ]
        if attempt < 2:
            assert len(new) == 1
            job = new[0]
        else:
            assert new == []
    assert status["failedJobCount"] == 3
    assert condition({"status": status}, "MaxFailedJobsReached")["status"] == "True"
    # A new generation resets the budget.
    fresh, _ = sync(request(parent(status=status, generation=2), jobs), now=now + timedelta(minutes=1))
    assert fresh["status"]["failedJobCount"] == 0
    assert (
        len(
            [
                c
                for c in fresh["children"]
                if c["metadata"]["name"] not in {j["metadata"]["name"] for j in jobs}
            ]
        )
        == 1
    )


def test_success_without_an_ami_in_the_termination_message_is_a_failure() -> None:
    body, job = first_build()
    done = succeeded(job)
    after, decision = sync(
        request(parent(status=body["status"]), [done], [build_pod(done, "")]),
        now=T0 + timedelta(minutes=25, seconds=10),
    )
    assert decision.effects == ()
    assert after["children"] == [job]
    assert after["status"]["failedJobCount"] == 1
    assert "NoArtifact" in after["status"]["lastRunMessage"]


# -- rule 9: deleting Jobs ---------------------------------------------------------------------------------------


def test_a_job_being_deleted_is_not_running_and_not_emitted() -> None:
    body, job = first_build()
    fresh = managed_image(BUILT, T0 - timedelta(hours=1))
    after, _ = sync(
        request(parent(status=body["status"]), [deleting(running(job))]),
        AmiFacts(managed=(fresh,), base_image=BASE),
    )
    assert after["children"] == []


# -- rules 4, 5, 6: shape of desired Jobs -------------------------------------------------------------------------


def _walk(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *[x for v in value.values() for x in _walk(v)]]
    if isinstance(value, list):
        return [value, *[x for v in value for x in _walk(v)]]
    return [value]


@pytest.mark.parametrize("name", [NAME, "a" * 63, "b" * 200, "team.ami-builders.x" + "y" * 100])
def test_desired_jobs_are_clean(name: str) -> None:
    body, _ = sync(request(parent(name=name)))
    for child in body["children"]:
        meta = child["metadata"]
        assert len(meta["name"]) <= 63
        assert "generateName" not in meta
        for forbidden in ("ownerReferences", "uid", "resourceVersion"):
            assert forbidden not in meta
        assert "status" not in child
        assert "selector" not in child["spec"]
        for labels in (meta["labels"], child["spec"]["template"]["metadata"]["labels"]):
            assert not any(
                k in ("controller-uid", "job-name") or k.startswith("batch.kubernetes.io/") for k in labels
            )
        assert all(v not in (None, "", [], {}) for v in _walk(child))


def test_observed_jobs_are_restated_without_server_fields() -> None:
    body, job = first_build()
    again, _ = sync(request(parent(status=body["status"]), [running(job)]))
    assert again["children"] == [job]
    assert observed(job) != job


def test_a_restated_job_keeps_zeros_and_falses_and_drops_every_empty_value() -> None:
    _, job = first_build()
    server = observed(job)
    server["spec"] |= {"suspend": False, "backoffLimit": 0, "activeDeadlineSeconds": None}
    server["spec"]["template"]["spec"] |= {"nodeSelector": {}, "hostname": "", "tolerations": [{"key": ""}]}
    container = server["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"limits": {}, "requests": {}}
    container["args"] = [*container.get("args", []), "", "0"]

    restated = as_desired(server)

    spec = restated["spec"]
    assert (spec["suspend"], spec["backoffLimit"]) == (False, 0)
    assert "activeDeadlineSeconds" not in spec
    assert not {"nodeSelector", "hostname", "tolerations"} & set(spec["template"]["spec"])
    restated_container = spec["template"]["spec"]["containers"][0]
    assert "resources" not in restated_container
    assert restated_container["args"][-1] == "0"
    assert "" not in restated_container["args"]


# -- item 11 and rule 15: faults and invalid specs never cost a build -------------------------------------------


@pytest.mark.parametrize(
    ("fault", "resync"),
    [
        (AwsFault("RequestLimitExceeded", "Request limit exceeded.", temporary=True), 15),
        (AwsFault("EndpointConnectionError", "could not connect", temporary=True), 15),
        (
            AwsFault(
                "UnauthorizedOperation", "not authorized to perform ec2:DescribeImages", temporary=False
            ),
            60,
        ),
    ],
)
def test_ec2_fault_keeps_jobs_and_status_and_names_the_error(fault: AwsFault, resync: int) -> None:
    body, job = first_build()
    steady, _ = sync(request(parent(status=body["status"]), [running(job)]))
    after, _ = sync(request(parent(status=steady["status"]), [running(job)]), AmiFacts(fault=fault))
    assert after["children"] == [job]
    error = condition(after, "AWSError")
    assert error["reason"] == fault.code
    assert fault.code in error["message"]
    assert {k: v for k, v in after["status"].items() if k != "conditions"} == {
        k: v for k, v in steady["status"].items() if k != "conditions"
    }
    assert after["resyncAfterSeconds"] == resync


def test_fault_resync_backs_off_while_the_fault_lasts() -> None:
    fault = AmiFacts(fault=AwsFault("RequestLimitExceeded", "slow down", temporary=True))
    first, _ = sync(request(parent()), fault)
    later, _ = sync(request(parent(status=first["status"])), fault, now=T0 + timedelta(minutes=2))
    much_later, _ = sync(request(parent(status=later["status"])), fault, now=T0 + timedelta(hours=1))
    assert first["resyncAfterSeconds"] < later["resyncAfterSeconds"] < much_later["resyncAfterSeconds"] <= 300
    assert first["children"] == []


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda s: s.pop("region"), "spec.region"),
        (lambda s: s["builder"].pop("repoURL"), "spec.builder.repoURL"),
        (lambda s: s["builder"].pop("image"), "spec.builder.image"),
        (lambda s: s["timeOuts"].update(expiresIn="two days"), "spec.timeOuts.expiresIn"),
        (lambda s: s["builder"]["commands"][0].update(onError="ask"), "spec.builder.commands[0].onError"),
        (lambda s: s["builder"].update(dir="../../etc"), "spec.builder.dir"),
        (lambda s: s["builder"].update(dir="/etc"), "spec.builder.dir"),
        (lambda s: s["builder"].update(repoURL="file:///etc/passwd"), "spec.builder.repoURL"),
        (lambda s: s["builder"].update(repoURL="--upload-pack=touch /tmp/x"), "spec.builder.repoURL"),
    ],
)
def test_invalid_spec_is_a_condition_naming_the_field_and_keeps_running_jobs(mutate: Any, field: str) -> None:
    body, job = first_build()
    spec = copy.deepcopy(SEED_SPEC)
    mutate(spec)
    after, _ = sync(request(parent(spec, status=body["status"], generation=2), [running(job)]))
    invalid = condition(after, "InvalidSpec")
    assert invalid["status"] == "True"
    assert invalid["message"].startswith(field + ":")
    assert after["children"] == [job]
    assert after["status"]["jobName"] == body["status"]["jobName"]


def test_invalid_spec_starts_nothing() -> None:
    spec = copy.deepcopy(SEED_SPEC)
    spec.pop("region")
    body, _ = sync(request(parent(spec)))
    assert body["children"] == []
    assert body["status"]["state"] == "InvalidSpec"


# -- item 10: conditions and their times --------------------------------------------------------------------------


def test_condition_time_changes_only_on_transition() -> None:
    body, job = first_build()
    ready_since = condition(body, "Ready")["lastTransitionTime"]
    later, _ = sync(request(parent(status=body["status"]), [running(job)]), now=T0 + timedelta(minutes=9))
    assert condition(later, "Ready")["lastTransitionTime"] == ready_since
    recorded, _ = succeeded_sync(later["status"], job, built_image(job))
    assert condition(recorded, "Ready")["status"] == "True"
    # Ready since the AMI was created: the Job's completion time, also its create-timestamp tag.
    assert condition(recorded, "Ready")["lastTransitionTime"] == "2026-11-20T12:25:00Z"
    for c in recorded["status"]["conditions"]:
        assert set(c) == {"type", "status", "reason", "message", "lastTransitionTime"}


# -- rule 11: finalize -------------------------------------------------------------------------------------------


def test_finalize_waits_for_running_builds_and_is_idempotent() -> None:
    body, job = first_build()
    world = world_of(HookRequest.model_validate(request(parent(status=body["status"]), [running(job)])))
    waiting = decide_finalize(world, AmiFacts(), T0)
    assert waiting.finalized is False
    assert [c["metadata"]["name"] for c in waiting.children] == [job["metadata"]["name"]]
    done = world_of(HookRequest.model_validate(request(parent(status=body["status"]), [failed(job)])))
    assert decide_finalize(done, AmiFacts(), T0).finalized is True
    assert decide_finalize(done, AmiFacts(), T0) == decide_finalize(done, AmiFacts(), T0)


def test_every_emitted_job_is_a_valid_kubernetes_1_30_job() -> None:
    body, job = first_build()
    restated, _ = sync(request(parent(status=body["status"]), [running(job)]))
    failed_kept = fail_once(body["status"], job, T0 + timedelta(minutes=6))
    for child in [*body["children"], *restated["children"], *failed_kept["children"]]:
        kubernetes_validate.validate(child, "1.30", strict=True)
