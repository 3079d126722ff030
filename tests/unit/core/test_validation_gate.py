"""The validation gate in the pure decision (issue 20, docs/validation.md "The flow"): every transition of a
build whose spec asks for a validation, from the build's success to the verdict, and what each leaves behind."""

import copy
import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from app.core.build import PACKER_CONTAINER
from app.core.decide import decide, decide_finalize
from app.core.decision import Decision
from app.core.effects import Deregister, Publish, TagImages
from app.core.facts import AmiFacts, RegionImages
from app.http.reconcile import world_of
from app.main import _response
from app.model.hooks import HookRequest
from app.model.tags import Image
from tests.builders import (
    NAME,
    NAMESPACE,
    T0,
    base_image,
    build_pod,
    failed,
    managed_image,
    parent,
    request,
    running,
    succeeded,
)
from tests.seed import SEED_SPEC

BASE = base_image()
BUILT = "ami-0b1a2b3c4d5e6f708"
OLD = "ami-0old0000000000001"
PARAMETER = "/platform/ami/web"
CHECK = {"image": "registry.example.com/platform/ami-smoke:1.4", "args": ["--suite", "eks"]}
AFTER_BUILD = T0 + timedelta(minutes=30)
AFTER_CHECK = T0 + timedelta(minutes=45)
CHECK_ENDED = AFTER_BUILD + timedelta(minutes=10)
# Inside the first retry's backoff (1 minute) after the validation failed.
BACKING_OFF = CHECK_ENDED + timedelta(seconds=20)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def spec(validation: dict[str, Any] | None = CHECK, **top: Any) -> dict[str, Any]:
    body = copy.deepcopy(SEED_SPEC)
    body["publish"] = {"ssmParameter": PARAMETER}
    if validation is not None:
        body["validation"] = validation
    return body | top


def sync(
    req: dict[str, Any], facts: AmiFacts, now: Any = AFTER_BUILD, hook_image: str = "hook:1.0"
) -> tuple[dict[str, Any], Decision]:
    decision = decide(world_of(HookRequest.model_validate(req), hook_image), facts, now)
    return json.loads(json.dumps(_response(decision))), decision


def condition(body: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in body["status"]["conditions"] if c["type"] == kind), None)


def names(body: dict[str, Any]) -> list[str]:
    return [c["metadata"]["name"] for c in body["children"]]


def tags_set(decision: Decision) -> dict[str, dict[str, str]]:
    """Which tags each AMI gets in this answer."""
    out: dict[str, dict[str, str]] = {}
    for effect in decision.effects:
        if isinstance(effect, TagImages):
            for image_id in effect.image_ids:
                out.setdefault(image_id, {}).update(dict(effect.tags))
    return out


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def old_active() -> Image:
    """The builder's previous AMI: expired (48h) just before the build, so the build is due."""
    return managed_image(OLD, T0 - timedelta(days=2, minutes=1), spec=spec())


class Flow:
    """One builder walked through build, validation and verdict, as Metacontroller would show it each time."""

    def __init__(self, validation: dict[str, Any] | None = CHECK, **top: Any) -> None:
        self.spec = spec(validation, **top)
        first, _ = sync(request(parent(self.spec)), AmiFacts(base_image=BASE, managed=(old_active(),)), T0)
        self.status = first["status"]
        (self.build,) = first["children"]
        self.built = succeeded(self.build)
        pod = build_pod(self.built, f"us-west-2:{BUILT}\ncommit={COMMIT}")
        self.pods = [pod]

    def image(self, status: str | None = None, build: bool = True) -> Image:
        body = json.loads(json.dumps(self.built))
        tags: dict[str, str] = {}
        if status is not None:
            labels = body["metadata"]["labels"]
            tags = {
                **managed_image(BUILT, T0, spec=self.spec).tags,
                "status": status,
                "create-timestamp": "2026-11-20T12:25:00Z",
                "build-id": labels["ami.refresh.ops/build-id"] if build else "other",
                "job-id": labels["ami.refresh.ops/job-id"],
                "base-ami": BASE.image_id,
                "packer-repo-commit": COMMIT,
            }
        return Image(BUILT, "available", T0 + timedelta(minutes=20), "opsy-built", tags, "x86_64")

    def facts(self, status: str | None = None) -> AmiFacts:
        image = self.image(status)
        managed = (old_active(), image) if status is not None else (old_active(),)
        return AmiFacts(
            base_image=BASE,
            managed=managed,
            built=(image,),
            parameters={("us-west-2", PARAMETER): OLD},
            parameter_owners={("us-west-2", PARAMETER): f"{NAMESPACE}/{NAME}"},
        )

    def sync(
        self, jobs: list[dict[str, Any]], status: str | None, now: Any = AFTER_BUILD, **kw: Any
    ) -> tuple[dict[str, Any], Decision]:
        body, decision = sync(
            request(parent(self.spec, self.status, **kw), jobs, self.pods), self.facts(status), now
        )
        return body, decision

    def validating(self) -> tuple[dict[str, Any], Decision, dict[str, Any]]:
        """The answer to the build's success: the AMIs validating, the validation Job asked for."""
        body, decision = self.sync([self.built], None)
        (check,) = [c for c in body["children"] if c["metadata"]["name"].endswith("-validate")]
        self.status = body["status"]
        return body, decision, check

    def verdict_pod(self, job: dict[str, Any], message: str, exit_code: int) -> None:
        pod = build_pod(job, message, exit_code)
        pod["status"]["containerStatuses"][0]["name"] = "validate"
        self.pods.append(pod)


def test_without_validation_a_success_is_active_at_once() -> None:
    flow = Flow(validation=None)
    body, decision = flow.sync([flow.built], None)
    assert body["status"]["state"] == "AMICreated"
    assert tags_set(decision)[BUILT]["status"] == "active"
    assert names(body) == [flow.build["metadata"]["name"]]


def test_a_successful_build_is_tagged_validating_and_asks_for_its_validation_job() -> None:
    flow = Flow()
    body, decision, check = flow.validating()
    status = body["status"]
    assert status["state"] == "Validating"
    assert status["jobStatus"] == "validating"
    assert status.get("lastRunBuiltImageID", "") == ""  # nothing built counts until it passes
    tags = tags_set(decision)
    assert tags[BUILT]["status"] == "validating"
    assert tags[BUILT]["brought-to-you-by"] == "opsy-the-ami-operator"  # before the Job runs
    assert OLD not in tags  # the previous AMI is neither retired ...
    assert not [e for e in decision.effects if isinstance(e, Publish | Deregister)]  # ... nor published over
    assert condition(body, "Ready")["reason"] == "AMIExpired"  # type: ignore[index]  # the previous AMI's
    validated = condition(body, "Validated")
    assert validated is not None
    assert (validated["status"], validated["reason"]) == ("Unknown", "Validating")
    assert status["validation"] == {
        "jobName": f"{flow.build['metadata']['name']}-validate",
        "imageID": BUILT,
        "buildID": flow.status["buildID"],
        "result": "Running",
        "message": f"Job {check['metadata']['name']} is validating {BUILT}",
    }
    assert sorted(names(body)) == sorted([flow.build["metadata"]["name"], check["metadata"]["name"]])
    labels = check["metadata"]["labels"]
    assert labels["ami.refresh.ops/step"] == "validate"
    assert flow.build["metadata"]["labels"]["ami.refresh.ops/step"] == "build"
    assert labels["ami.refresh.ops/build-id"] == flow.status["buildID"]
    env = env_of(check)
    assert env["AMI_ID"] == BUILT
    assert env["AMI_REGION"] == "us-west-2"
    assert env["AMI_IDS"] == f"us-west-2:{BUILT}:x86_64"
    assert env["BASE_AMI_ID"] == BASE.image_id
    assert env["BUILD_ID"] == flow.status["buildID"]
    assert env["PACKER_BUILDER"] == f"{NAMESPACE}/{NAME}"
    assert env["PACKER_REPO_COMMIT"] == COMMIT
    assert check["spec"]["activeDeadlineSeconds"] == 1800
    assert check["spec"]["backoffLimit"] == 0
    (container,) = check["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["args"]) == (CHECK["image"], CHECK["args"])
    kubernetes_validate.validate(check, "1.31", strict=True)


def test_a_running_validation_is_followed_and_nothing_else_starts() -> None:
    flow = Flow()
    _, _, check = flow.validating()
    jobs = [flow.built, running(check, AFTER_BUILD)]
    # Long after the previous AMI expired: still no build while the new one is being validated.
    for now, generation in ((AFTER_BUILD, 1), (T0 + timedelta(days=5), 1), (AFTER_BUILD, 2)):
        body, decision = flow.sync(jobs, "validating", now, generation=generation)
        assert body["status"]["state"] == "Validating"
        assert sorted(names(body)) == sorted(j["metadata"]["name"] for j in jobs)
        assert not tags_set(decision)


def test_a_stale_request_without_the_validation_job_asks_for_the_same_one() -> None:
    flow = Flow()
    _, _, check = flow.validating()
    body, _ = flow.sync([flow.built], "validating")
    assert check["metadata"]["name"] in names(body)
    assert len(body["children"]) == 2


def test_a_passed_validation_makes_the_ami_active_and_does_what_a_success_does() -> None:
    flow = Flow()
    _, _, check = flow.validating()
    done = succeeded(check, AFTER_BUILD, AFTER_BUILD + timedelta(minutes=10))
    flow.verdict_pod(done, "passed: booted", 0)
    body, decision = flow.sync([flow.built, done], "validating", AFTER_CHECK)
    status = body["status"]
    assert status["state"] == "AMICreated"
    assert status["jobStatus"] == "completed"
    assert status["lastRunBuiltImageID"] == BUILT
    tags = tags_set(decision)
    assert tags[BUILT]["status"] == "active"
    assert tags[BUILT]["create-timestamp"] == "2026-11-20T12:25:00Z"  # when it was built, not validated
    assert tags[OLD] == {"status": "deprecated"}
    assert Publish("us-west-2", PARAMETER, BUILT) in decision.effects
    validated = condition(body, "Validated")
    assert validated is not None
    assert (validated["status"], validated["reason"]) == ("True", "Passed")
    assert check["metadata"]["name"] in validated["message"]
    assert status["validation"]["result"] == "Passed"
    assert sorted(names(body)) == sorted([flow.build["metadata"]["name"], check["metadata"]["name"]])


@pytest.mark.parametrize(
    ("reason", "said", "shown"),
    [
        (
            "BackoffLimitExceeded",
            "ssm command 2 (systemctl is-active kubelet) exited 3: inactive",
            "exited 3",
        ),
        ("DeadlineExceeded", "", "DeadlineExceeded"),
    ],
    ids=["check-failed", "timeout"],
)
def test_a_failed_validation_rejects_the_ami_as_a_failed_attempt(reason: str, said: str, shown: str) -> None:
    flow = Flow()
    _, _, check = flow.validating()
    done = failed(check, AFTER_BUILD, CHECK_ENDED, reason=reason)
    if said:
        flow.verdict_pod(done, said, 1)
    body, decision = flow.sync([flow.built, done], "validating", BACKING_OFF)
    status = body["status"]
    tags = tags_set(decision)
    assert tags[BUILT]["status"] == "rejected"
    assert OLD not in tags
    assert not [e for e in decision.effects if isinstance(e, Publish)]
    assert status["jobStatus"] == "failed"
    assert status["failedJobCount"] == 1
    assert status.get("lastRunBuiltImageID", "") == ""
    assert status["validation"]["result"] == "Failed"
    validated = condition(body, "Validated")
    assert validated is not None
    assert (validated["status"], validated["reason"]) == ("False", "ValidationFailed")
    assert check["metadata"]["name"] in validated["message"]
    assert shown in validated["message"]
    assert decision.news.failure == status["validation"]["message"]
    # Kept for `kubectl logs`: failedJobsHistoryLimit (default 1) keeps the failed build, both its Jobs.
    assert sorted(names(body)) == sorted([flow.build["metadata"]["name"], check["metadata"]["name"]])
    # Recorded: the next sync backs off like after any failed build, and the rejection still stands.
    flow.status = status
    again, decision = flow.sync([flow.built, done], "rejected", BACKING_OFF + timedelta(seconds=10))
    assert again["status"]["state"] == "JobFailed"
    assert again["status"]["nextBuildTime"] == "2026-11-20T12:41:00Z"  # a minute after the validation failed
    assert again["status"]["failedJobCount"] == 1
    assert not tags_set(decision)


def test_rejections_use_up_max_number_of_jobs() -> None:
    flow = Flow(maxNumberOfJobs=1)
    _, _, check = flow.validating()
    done = failed(check, AFTER_BUILD, AFTER_BUILD + timedelta(minutes=10))
    body, _ = flow.sync([flow.built, done], "validating", T0 + timedelta(days=3))
    assert body["status"]["state"] == "MaxFailedJobsReached"
    assert not [
        n for n in names(body) if n not in (flow.build["metadata"]["name"], check["metadata"]["name"])
    ]


@pytest.mark.parametrize(
    ("retention", "removed"),
    [({"keep": 1}, True), ({}, False)],
    ids=["retention-on", "retention-off"],
)
def test_a_rejected_ami_is_removed_first_with_retention_and_kept_tagged_without(
    retention: dict[str, Any], removed: bool
) -> None:
    flow = Flow(retention=retention)
    _, _, check = flow.validating()
    done = failed(check, AFTER_BUILD, CHECK_ENDED)
    body, _ = flow.sync([flow.built, done], "validating", BACKING_OFF)
    flow.status = body["status"]
    _, decision = flow.sync([flow.built, done], "rejected", BACKING_OFF + timedelta(seconds=10))
    gone = [e.image_id for e in decision.effects if isinstance(e, Deregister)]
    assert gone == ([BUILT] if removed else [])  # and never the current AMI


def test_a_validating_ami_does_not_push_older_amis_beyond_keep() -> None:
    flow = Flow(retention={"keep": 1})
    _, decision, _ = flow.validating()
    assert not [e for e in decision.effects if isinstance(e, Deregister)]


def test_an_ami_left_validating_by_an_interrupted_run_is_validated_again_not_adopted() -> None:
    flow = Flow()
    image = flow.image("validating")
    facts = AmiFacts(base_image=BASE, managed=(image,))
    body, decision = sync(request(parent(flow.spec)), facts, AFTER_BUILD)
    assert body["status"]["state"] == "Validating"
    (check,) = body["children"]
    assert env_of(check)["AMI_ID"] == BUILT
    assert check["metadata"]["labels"]["ami.refresh.ops/build-id"] == image.tags["build-id"]
    assert not tags_set(decision)
    # Its verdict, with the build Job long gone: active and recorded as built.
    done = succeeded(check, AFTER_BUILD, AFTER_BUILD + timedelta(minutes=10))
    after, decision = sync(request(parent(flow.spec, body["status"]), [done]), facts, AFTER_CHECK)
    assert after["status"]["state"] == "AMICreated"
    assert after["status"]["lastRunBuiltImageID"] == BUILT
    assert tags_set(decision)[BUILT]["status"] == "active"


def test_without_spec_validation_an_ami_left_validating_is_not_gated() -> None:
    """spec.validation was removed since: like a build whose validation had not started, no gate holds the AMI
    (there is no validation Job to ask for: asking for one was a 500 on every sync)."""
    flow = Flow()
    facts = AmiFacts(base_image=BASE, managed=(flow.image("validating"),))
    body, decision = sync(request(parent(spec(None))), facts, AFTER_BUILD)
    assert body["children"] == []
    assert body["status"]["state"] == "AMICreated"
    assert body["status"]["lastRunBuiltImageID"] == BUILT
    assert tags_set(decision)[BUILT]["status"] == "active"


def test_an_adopted_ami_is_not_validated_again() -> None:
    flow = Flow()
    image = managed_image(BUILT, AFTER_BUILD, spec=flow.spec)
    body, _ = sync(request(parent(flow.spec)), AmiFacts(base_image=BASE, managed=(image,)), AFTER_BUILD)
    assert body["status"]["state"] == "AMIAdopted"
    assert body["children"] == []


def test_removing_spec_validation_does_not_cut_a_running_validation_short() -> None:
    flow = Flow()
    _, _, check = flow.validating()
    flow.spec = spec(None)
    body, _ = flow.sync([flow.built, running(check, AFTER_BUILD)], "validating", generation=2)
    assert body["status"]["state"] == "Validating"


def test_the_boot_check_runs_in_the_hooks_image_and_needs_it() -> None:
    boot = {
        "timeout": "20m",
        "bootCheck": {
            "subnetID": "subnet-0123456789abcdef0",
            "instanceProfile": "ssm",
            "ssmCommands": ["test -f /etc/kubernetes/kubelet/config.json"],
        },
    }
    flow = Flow(validation=boot)
    _, _, check = flow.validating()
    (container,) = check["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "hook:1.0"
    assert container["command"] == ["python", "-m", "app.validation", "boot-check"]
    env = env_of(check)
    assert env["BOOT_CHECK_SUBNET_ID"] == "subnet-0123456789abcdef0"
    assert env["BOOT_CHECK_INSTANCE_PROFILE"] == "ssm"
    assert json.loads(env["BOOT_CHECK_SSM_COMMANDS"]) == ["test -f /etc/kubernetes/kubelet/config.json"]
    assert json.loads(env["BOOT_CHECK_TAGS"])["brought-to-you-by"] == "opsy-the-ami-operator"
    assert env["BOOT_CHECK_TIMEOUT_SECONDS"] == str(20 * 60 - 60)
    assert container["envFrom"] == [{"secretRef": {"name": "aws-creds"}}]  # the builder's credentials
    kubernetes_validate.validate(check, "1.31", strict=True)
    body, _ = sync(request(parent(flow.spec)), AmiFacts(base_image=BASE), T0, hook_image="")
    assert body["status"]["state"] == "InvalidSpec"
    assert "spec.validation.bootCheck" in condition(body, "InvalidSpec")["message"]  # type: ignore[index]


def test_a_secret_in_the_checks_env_stays_a_reference() -> None:
    secret = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "smoke", "key": "token"}}}
    flow = Flow(validation={**CHECK, "env": [secret, {"name": "SUBNET_ID", "value": "subnet-1"}]})
    _, _, check = flow.validating()
    env = env_of(check)
    assert env["TOKEN"] == {"secretKeyRef": {"name": "smoke", "key": "token", "optional": False}}
    assert env["SUBNET_ID"] == "subnet-1"


def test_finalize_waits_for_a_running_validation() -> None:
    flow = Flow()
    _, _, check = flow.validating()
    req = request(parent(flow.spec, flow.status), [flow.built, running(check, AFTER_BUILD)], flow.pods)
    decision = decide_finalize(
        world_of(HookRequest.model_validate(req)), flow.facts("validating"), AFTER_BUILD
    )
    assert decision.finalized is False
    assert [c["metadata"]["name"] for c in decision.children] == [check["metadata"]["name"]]
    assert "validation" in decision.status.lastRunMessage


def test_finalize_before_the_validation_ran_names_the_amis_left_validating() -> None:
    flow = Flow()
    req = request(parent(flow.spec, flow.status), [flow.built], flow.pods)
    decision = decide_finalize(world_of(HookRequest.model_validate(req)), flow.facts(None), AFTER_BUILD)
    assert decision.finalized is True
    assert decision.children == ()
    assert BUILT in decision.status.lastRunMessage
    assert "validating" in decision.status.lastRunMessage
    assert tags_set(decision)[BUILT]["status"] == "validating"


def test_validation_reports_come_from_the_validate_container_only() -> None:
    flow = Flow()
    _, _, check = flow.validating()
    done = failed(check, AFTER_BUILD, AFTER_BUILD + timedelta(minutes=10))
    pod = build_pod(done, "not the check's words", 1)
    assert pod["status"]["containerStatuses"][0]["name"] == PACKER_CONTAINER
    flow.pods.append(pod)
    body, _ = flow.sync([flow.built, done], "validating", AFTER_CHECK)
    assert "not the check's words" not in body["status"]["validation"]["message"]


def test_the_validation_waits_for_every_copy_so_that_each_is_checked() -> None:
    flow = Flow()
    copy_id = "ami-0c0c0c0c0c0c0c0c0"
    flow.pods = [build_pod(flow.built, f"us-west-2:{BUILT},eu-west-1:{copy_id}\ncommit={COMMIT}")]

    def with_copy(state: str) -> AmiFacts:
        copy = Image(copy_id, state, T0 + timedelta(minutes=22), "opsy-built", {}, "x86_64")
        return replace(flow.facts(None), elsewhere={"eu-west-1": RegionImages(built=(copy,))})

    req = request(parent(flow.spec, flow.status), [flow.built], flow.pods)
    body, _ = sync(req, with_copy("pending"))
    assert body["status"]["state"] == "Validating"
    assert names(body) == [flow.build["metadata"]["name"]]  # no validation Job yet
    body, _ = sync(req, with_copy("available"))
    (check,) = [c for c in body["children"] if c["metadata"]["name"].endswith("-validate")]
    assert env_of(check)["AMI_IDS"].splitlines() == [
        f"eu-west-1:{copy_id}:x86_64",
        f"us-west-2:{BUILT}:x86_64",
    ]
