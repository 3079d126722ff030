"""A builder's states, as one table: what each means, which facts lead to it, the Ready condition it implies
and when the hook looks again. `app.core.decide.classify` works out the state first, in the table's order, then
hands over to that state's one function (`app.core.handlers`). The README's "How a builder lives", the state table
in docs/freshness.md and the CRD's `State` column description are checked against (or made from) this table.
"""

from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    JOB_CREATION = "JobCreation"
    JOB_RUNNING = "JobRunning"
    WAITING_FOR_IMAGE = "WaitingForImage"
    VALIDATING = "Validating"
    AMI_CREATED = "AMICreated"
    AMI_ADOPTED = "AMIAdopted"
    JOB_FAILED = "JobFailed"
    MAX_FAILED = "MaxFailedJobsReached"
    SCHEDULED = "Scheduled"
    SUSPENDED = "Suspended"
    BASE_IMAGE_NOT_FOUND = "BaseImageNotFound"
    INVALID_SPEC = "InvalidSpec"
    FINALIZING = "Finalizing"


@dataclass(frozen=True)
class Row:
    state: State
    means: str
    """What the builder is doing or waiting for (docs/freshness.md)."""
    when: str
    """Which facts lead to it, in the order `classify` asks."""
    ready: str
    """The Ready condition it implies."""
    again: str
    """When the hook looks again (resyncAfterSeconds)."""


TABLE: tuple[Row, ...] = (
    Row(
        State.INVALID_SPEC,
        "A field is invalid (named in the `InvalidSpec` condition); nothing starts, every Job stays",
        "the spec does not parse",
        "False `InvalidSpec`",
        "5 minutes",
    ),
    Row(
        State.JOB_RUNNING,
        "A build Job is running; every sync returns it unchanged",
        "a Job of the builder is running (read from its own labels: a lost status cannot hide it)",
        "follows the current AMI",
        "1 minute (at most the controller timer)",
    ),
    Row(
        State.WAITING_FOR_IMAGE,
        "The Job succeeded; waiting for its termination message or for the AMI to become available",
        "the latest finished build succeeded and its AMI in spec.region is not visible or still pending",
        "follows the current AMI",
        "30 seconds",
    ),
    Row(
        State.VALIDATING,
        "The build's AMIs are tagged `validating`; the validation Job checks them; nothing is published until it passes",
        "the latest build succeeded and spec.validation asks for a check, or AMIs tagged `validating` await one",
        "follows the current AMI",
        "1 minute (at most the controller timer)",
    ),
    Row(
        State.AMI_CREATED,
        "An active, unexpired AMI that this builder built exists; nothing to do until it expires",
        "a current AMI in spec.region that the status records as built (and no rebuild on a newer base is due)",
        "True `AMIAvailable`",
        "at expiry, base soak end or next window, at most the controller timer",
    ),
    Row(
        State.AMI_ADOPTED,
        "An active, unexpired AMI found with the builder's tags was adopted (its expiry clock is not reset)",
        "a current AMI in spec.region that the status does not record as built",
        "True `AMIAvailable`",
        "at expiry, base soak end or next window, at most the controller timer",
    ),
    Row(
        State.SUSPENDED,
        "A build is due, but `spec.suspend` is true",
        "a build is due and spec.suspend is true",
        "follows the current AMI",
        "the controller timer",
    ),
    Row(
        State.MAX_FAILED,
        "No more builds until the spec changes",
        "a build is due and maxNumberOfJobs builds of this spec generation and cycle failed",
        "follows the current AMI",
        "the controller timer",
    ),
    Row(
        State.JOB_FAILED,
        "A build failed; the retry time is in `nextBuildTime` and the `JobFailed` condition",
        "a build is due, it failed before, and its backoff (1, 2, 4… minutes) has not passed",
        "follows the current AMI",
        "at the retry time",
    ),
    Row(
        State.BASE_IMAGE_NOT_FOUND,
        "A build is due, but the base-image source names no usable AMI",
        "a build is due and the filters or the parameter name no usable base AMI",
        "follows the current AMI",
        "the controller timer",
    ),
    Row(
        State.SCHEDULED,
        "A build is due and waits for the window in `nextBuildTime`",
        "a first attempt is due, spec.schedule is set and its next tick is still ahead",
        "follows the current AMI",
        "at the window tick, at most the controller timer",
    ),
    Row(
        State.JOB_CREATION,
        "A build Job was asked for",
        "a build is due and nothing holds it back (or the status asked for a Job the request does not show yet)",
        "follows the current AMI",
        "1 minute (at most the controller timer)",
    ),
    Row(
        State.FINALIZING,
        "The PackerBuilder is being deleted; a running build is let finish and a late one recorded",
        "the /finalize hook",
        "unchanged",
        "30 seconds while waiting, else 5 minutes",
    ),
)


ROWS = {row.state: row for row in TABLE}


def column_description() -> str:
    """The CRD's `State` printer column and `status.state` description."""
    return "One of " + ", ".join(row.state.value for row in TABLE) + " (docs/freshness.md, States)."
