"""A build's identity: the deterministic Job name and the labels that let any replica recognise it.

The name is a hash of what makes this build distinct (builder uid, spec generation, the AMI it replaces,
the attempt number), so a stale request (rule 8) always arrives at the same name and a new cycle never
reuses an old one (rule 7).
"""

import hashlib
import uuid
from dataclasses import dataclass

from app.model.spec import API_GROUP
from app.model.spec import PACKER_CONTAINER as PACKER_CONTAINER  # noqa: PLC0414 - one name for both containers

LABEL_OWNER_UID = f"{API_GROUP}/owner-uid"
LABEL_BUILD_ID = f"{API_GROUP}/build-id"
LABEL_JOB_ID = f"{API_GROUP}/job-id"
LABEL_ATTEMPT = f"{API_GROUP}/attempt"
LABEL_GENERATION = f"{API_GROUP}/generation"
# Which of a build's Jobs this is: the build itself, or its validation (docs/validation.md).
LABEL_STEP = f"{API_GROUP}/step"
STEP_BUILD = "build"
STEP_VALIDATE = "validate"
VALIDATE_CONTAINER = "validate"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "packer-builder-hook"

ANNOTATION_BASE_AMI = f"{API_GROUP}/base-ami"
ANNOTATION_REPLACES = f"{API_GROUP}/replaces-ami"
ANNOTATION_COMMAND = f"{API_GROUP}/command"

MAX_NAME = 63
JOB_ID_LENGTH = 8


@dataclass(frozen=True)
class BuildPlan:
    """Everything that identifies one build attempt; rendered into the Job's name, labels and annotations."""

    job_name: str
    build_id: str
    job_id: str
    attempt: int
    generation: int
    base_ami: str | None
    replaces_ami: str


def plan_build(
    parent_name: str, uid: str, generation: int, replaces_ami: str, attempt: int, base_ami: str | None
) -> BuildPlan:
    # The base AMI is deliberately not part of the identity: a newer base AMI appearing between a sync
    # and its stale replay must not produce a second build.
    key = f"{uid}/{generation}/{replaces_ami}/{attempt}"
    digest = hashlib.sha256(key.encode()).hexdigest()
    job_id = digest[:JOB_ID_LENGTH]
    return BuildPlan(
        job_name=job_name(parent_name, job_id),
        build_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{API_GROUP}/{key}")),
        job_id=job_id,
        attempt=attempt,
        generation=generation,
        base_ami=base_ami,
        replaces_ami=replaces_ami,
    )


def validation_job_name(parent_name: str, job_id: str) -> str:
    """The one validation Job of the build `job_id`: named after the build, so asking again asks for the same."""
    return job_name(parent_name, f"{job_id}-validate")


def job_name(parent_name: str, job_id: str) -> str:
    """`<parent>-<job id>`, at most 63 characters; long parent names are cut and given a short hash."""
    name = f"{parent_name}-{job_id}"
    if len(name) <= MAX_NAME:
        return name
    short = hashlib.sha256(parent_name.encode()).hexdigest()[:6]
    room = MAX_NAME - len(job_id) - len(short) - 2
    return f"{parent_name[:room].rstrip('-.')}-{short}-{job_id}"
