"""The validation Job (docs/validation.md, "The flow"): one per build whose AMIs wait for a verdict, running
either the team's own check (`spec.validation.image`) or the boot check in the hook's own image.

It carries its build's labels (build id, job id, attempt, generation) plus `ami.refresh.ops/step: validate`, so a
failed validation counts as a failed attempt of that build, and it is named after the build, so asking for it
again (a restart, a stale request, a spec change) always asks for the same one.
"""

import json
from typing import Any

from app.core.build import (
    ANNOTATION_BASE_AMI,
    ANNOTATION_REPLACES,
    LABEL_ATTEMPT,
    LABEL_BUILD_ID,
    LABEL_GENERATION,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_OWNER_UID,
    LABEL_STEP,
    MANAGED_BY,
    STEP_VALIDATE,
    VALIDATE_CONTAINER,
    validation_job_name,
)
from app.core.job import ANNOTATION_BUILDER, TERMINATION_LOG
from app.core.outcome import Outcome
from app.model.spec import ObjectMeta, PackerBuilderSpec
from app.model.validation import BootCheck, Validation

BOOT_CHECK_COMMAND = ["python", "-m", "app.validation", "boot-check"]
# The boot check stops itself this long before the Job's deadline, to terminate its instance and say why.
BOOT_CHECK_MARGIN_SECONDS = 60
# What the boot check needs after SIGTERM to terminate its instance (docs/validation.md, "The boot check").
TERMINATION_GRACE_SECONDS = 120
# The hook image's user (Dockerfile).
HOOK_USER = 10001


def _env(name: str, value: str) -> dict[str, Any]:
    # An empty value is left out, as the API server leaves it out: the variable is still set, to "", and the
    # Job restated from what the request shows is the Job asked for (rule 6: no empty strings).
    return {"name": name, "value": value} if value else {"name": name}


def images_lines(outcome: Outcome) -> str:
    """AMI_IDS: every AMI under test, one `region:ami-id:architecture` per line."""
    return "\n".join(
        f"{a.region}:{a.image_id}:{a.image.architecture if a.image else ''}" for a in outcome.usable
    )


def facts_env(meta: ObjectMeta, spec: PackerBuilderSpec, outcome: Outcome) -> list[dict[str, Any]]:
    """What every validation Job tells its check about the build."""
    job = outcome.job
    return [
        _env("AMI_ID", outcome.image_id),
        _env("AMI_REGION", spec.region),
        _env("AMI_IDS", images_lines(outcome)),
        _env("BASE_AMI_ID", job.base_ami),
        _env("BUILD_ID", job.build_id),
        _env("PACKER_BUILDER", f"{meta.namespace}/{meta.name}"),
        _env("PACKER_REPO_COMMIT", outcome.commit),
        _env("AWS_REGION", spec.region),
        _env("AWS_DEFAULT_REGION", spec.region),
    ]


def _boot_check_env(check: BootCheck, validation: Validation, tags: dict[str, str]) -> list[dict[str, Any]]:
    env = [_env("BOOT_CHECK_SUBNET_ID", check.subnetID)]
    if check.instanceType:
        env.append(_env("BOOT_CHECK_INSTANCE_TYPE", check.instanceType))
    if check.securityGroupIDs:
        env.append(_env("BOOT_CHECK_SECURITY_GROUP_IDS", ",".join(check.securityGroupIDs)))
    if check.instanceProfile:
        env.append(_env("BOOT_CHECK_INSTANCE_PROFILE", check.instanceProfile))
    if check.ssmCommands:
        env.append(_env("BOOT_CHECK_SSM_COMMANDS", json.dumps(check.ssmCommands)))
    seconds = max(validation.timeout_seconds - BOOT_CHECK_MARGIN_SECONDS, BOOT_CHECK_MARGIN_SECONDS)
    env += [
        _env("BOOT_CHECK_TAGS", json.dumps(tags, sort_keys=True)),
        _env("BOOT_CHECK_TIMEOUT_SECONDS", str(seconds)),
    ]
    return env


def _user_env(validation: Validation) -> list[dict[str, Any]]:
    """spec.validation.env as given: a Secret's key stays a reference, never a value."""
    return [
        _env(e.name, e.value) if e.value is not None else e.model_dump(exclude_none=True)
        for e in validation.env
    ]


def _container(
    meta: ObjectMeta,
    spec: PackerBuilderSpec,
    validation: Validation,
    outcome: Outcome,
    hook_image: str,
    tags: dict[str, str],
) -> dict[str, Any]:
    env = facts_env(meta, spec, outcome)
    container: dict[str, Any] = {"name": VALIDATE_CONTAINER}
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if validation.bootCheck is not None:
        container |= {"image": hook_image, "command": list(BOOT_CHECK_COMMAND)}
        env += _boot_check_env(validation.bootCheck, validation, tags)
        security |= {"readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": HOOK_USER}
    else:
        container["image"] = validation.image
        if validation.command:
            container["command"] = list(validation.command)
        if validation.args:
            container["args"] = list(validation.args)
    container["env"] = env + _user_env(validation)
    if spec.builder.secret:
        # The builder's AWS credentials, when it has them as a Secret (IRSA needs none).
        container["envFrom"] = [{"secretRef": {"name": spec.builder.secret}}]
    container |= {
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": security,
        "terminationMessagePath": TERMINATION_LOG,
        # A check that dies without writing its message still says something: the end of its log.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return container


def render_validation_job(
    meta: ObjectMeta, spec: PackerBuilderSpec, outcome: Outcome, hook_image: str, tags: dict[str, str]
) -> dict[str, Any]:
    """The batch/v1 Job that validates `outcome`'s AMIs; deterministic, with no nulls and no empty values.

    `tags` are the builder's management tags, which the boot check puts on its instance.
    """
    validation = spec.validation
    assert validation is not None  # noqa: S101 - only asked for when spec.validation is set
    job = outcome.job
    labels = {
        LABEL_OWNER_UID: meta.uid,
        LABEL_BUILD_ID: job.build_id,
        LABEL_JOB_ID: job.job_id,
        LABEL_ATTEMPT: str(job.attempt),
        LABEL_GENERATION: str(job.generation),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_STEP: STEP_VALIDATE,
    }
    annotations = {ANNOTATION_BUILDER: meta.name}
    if job.base_ami:
        annotations[ANNOTATION_BASE_AMI] = job.base_ami
    if job.replaces_ami:
        annotations[ANNOTATION_REPLACES] = job.replaces_ami
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    account = validation.serviceAccountName or spec.builder.serviceAccountName
    if account:
        pod["serviceAccountName"] = account
    pod |= {
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(meta, spec, validation, outcome, hook_image, tags)],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": validation_job_name(meta.name, job.job_id),
            "namespace": meta.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            # A failed check is a verdict, not a flake to retry: the build is retried instead, within its budget.
            "backoffLimit": 0,
            "activeDeadlineSeconds": validation.timeout_seconds,
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
