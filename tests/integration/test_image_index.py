"""The shared AMI index and base-image cache (app.aws.image_index) against a real moto server.

Calls are counted at the last moment before the wire (tests.aws.Sends); the clock is a fake one, so "a
period later" is a number, not a sleep.
"""

import threading
from collections.abc import Callable

import boto3
import pytest

from app.aws.ec2 import AwsError, Ec2
from app.aws.image_index import IndexedImages
from app.aws.refreshed import NotInMemory
from app.core.base_image import ParameterSource, filter_source
from app.model.spec import AmiFilter
from app.model.tags import Image
from tests.aws import (
    EKS_130_X86_FILTERS,
    NEWEST_EKS_130_X86,
    OLDEST_EKS_130_X86,
    REGION,
    Sends,
    ec2_client,
    ec2_error,
    ec2_response,
    register_built_ami,
)

SEED_FILTERS = [AmiFilter.model_validate(f) for f in EKS_130_X86_FILTERS]
PARAMETER = "/platform/base/eks-1.30-x86_64"
PERIOD = 60.0
# moto has no deregistration protection: EC2's answer, given on the wire.
PROTECTED = (
    "<EnableImageDeregistrationProtectionResponse><requestId>r</requestId><return>enabled-without-cooldown"
    "</return></EnableImageDeregistrationProtectionResponse>"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def mine(created_by: str = "builder-a", **extra: str) -> dict[str, str]:
    return {
        "brought-to-you-by": "opsy-the-ami-operator",
        "cluster-name": "prod",
        "created-by": created_by,
        "packer-repo": "https://git.example/packer.git",
        "packer-repo-branch": "main",
        **extra,
    }


@pytest.fixture
def session(ec2_env: str) -> boto3.session.Session:
    return boto3.session.Session()


def indexed(session: boto3.session.Session, clock: Clock, **ec2: float) -> IndexedImages:
    return IndexedImages(
        Ec2(session=session, **ec2),  # type: ignore[arg-type]
        period=PERIOD,
        base_period=300,
        stale_after=5 * PERIOD,
        clock=clock,
    )


# -- base images ------------------------------------------------------------------------------------------


def test_base_image_is_looked_up_once_per_selector_and_refreshed_in_the_background(
    session: boto3.session.Session,
) -> None:
    clock = Clock()
    sends = Sends(session, "DescribeImages")
    images = indexed(session, clock)
    reordered = list(reversed(SEED_FILTERS))

    first = images.base_image(REGION, filter_source(SEED_FILTERS))
    clock.now += 299
    again = images.base_image(REGION, filter_source(reordered))
    assert sends.count == 1
    assert again == first

    images.base_image(REGION, filter_source(SEED_FILTERS[:1]))
    assert sends.count == 2, "a different selector is a different entry"
    images.base_image("eu-west-1", filter_source(SEED_FILTERS))
    assert sends.count == 3, "a different region is a different entry"

    clock.now += 2
    assert images.base_image(REGION, filter_source(SEED_FILTERS)) == first
    assert sends.count == 3, "a request never reloads, even once the period has passed"
    assert images.refresh_due() == 0
    assert sends.count == 4, "the background reload asks again for the one entry older than the period"


def test_concurrent_first_lookups_of_one_selector_share_one_call(session: boto3.session.Session) -> None:
    sends = Sends(session, "DescribeImages")
    sends.delay = 0.3
    images = indexed(session, Clock())
    ids: list[str | None] = []

    def look() -> None:
        image = images.base_image(REGION, filter_source(SEED_FILTERS))
        ids.append(image.image_id if isinstance(image, Image) else None)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert ids == [NEWEST_EKS_130_X86] * 8
    assert sends.count == 1


def test_a_failed_first_lookup_is_not_kept(session: boto3.session.Session) -> None:
    sends = Sends(session, "DescribeImages", answer=ec2_error(503, "Unavailable"))
    images = indexed(session, Clock(), max_attempts=1)

    with pytest.raises(AwsError):
        images.base_image(REGION, filter_source(SEED_FILTERS))
    sends.answer = None

    image = images.base_image(REGION, filter_source(SEED_FILTERS))
    assert isinstance(image, Image)
    assert image.image_id == NEWEST_EKS_130_X86
    assert sends.count == 2


def test_parameter_lookups_are_kept_until_the_background_refresh(
    ec2_env: str, session: boto3.session.Session
) -> None:
    ssm = session.client("ssm", region_name=REGION)
    ssm.put_parameter(Name=PARAMETER, Value=NEWEST_EKS_130_X86, Type="String", Overwrite=True)
    clock = Clock()
    sends = Sends(session, "GetParameter", service="ssm")
    images = indexed(session, clock)

    first = images.base_image(REGION, ParameterSource(PARAMETER))
    ssm.put_parameter(Name=PARAMETER, Value=OLDEST_EKS_130_X86, Type="String", Overwrite=True)
    assert images.base_image(REGION, ParameterSource(PARAMETER)) == first
    assert sends.count == 1

    clock.now += 300
    images.refresh_due()
    moved = images.base_image(REGION, ParameterSource(PARAMETER))
    assert isinstance(moved, Image)
    assert moved.image_id == OLDEST_EKS_130_X86


# -- the managed-AMI index ---------------------------------------------------------------------------------


def test_one_describe_images_per_region_serves_every_builder(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    a = register_built_ami(client, "a-1", tags=mine("builder-a", status="active"))
    b = register_built_ami(client, "b-1", tags=mine("builder-b", status="active"))
    register_built_ami(client, "not-ours", tags={"status": "active"})
    sends = Sends(session, "DescribeImages")
    images = indexed(session, Clock())

    assert [i.image_id for i in images.managed_images(REGION, mine("builder-a"))] == [a]
    assert [i.image_id for i in images.managed_images(REGION, mine("builder-b"))] == [b]
    assert images.managed_images(REGION, mine("builder-c")) == []
    assert sends.count == 1


def test_writes_go_through_and_a_background_refresh_does_not_undo_them(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    old = register_built_ami(client, "a-0", tags=mine(status="active"))
    new = register_built_ami(client, "a-1")
    clock = Clock()
    images = indexed(session, clock)
    assert [i.image_id for i in images.managed_images(REGION, mine())] == [old]

    images.images_by_id(REGION, [new])  # the finished build's AMI, read before it is tagged
    images.tag_images(REGION, [new], mine(status="active"))
    images.tag_images(REGION, [old], {"status": "deprecated"})
    sends = Sends(session, "DescribeImages")

    found = {i.image_id: i.tags["status"] for i in images.managed_images(REGION, mine())}
    assert found == {new: "active", old: "deprecated"}
    assert sends.count == 0

    images.deregister_image(REGION, old)
    assert [i.image_id for i in images.managed_images(REGION, mine())] == [new]
    clock.now += PERIOD
    assert images.refresh_due() == 0
    assert [i.image_id for i in images.managed_images(REGION, mine())] == [new]


def test_disabling_enabling_and_protection_go_through_and_a_refresh_agrees(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    old = register_built_ami(client, "a-0", tags=mine(status="deprecated"))
    clock = Clock()
    # Hooked before the first call makes the client: a client copies the session's handlers when made.
    Sends(session, "EnableImageDeregistrationProtection", answer=ec2_response(200, PROTECTED))
    sends = Sends(session, "DescribeImages")
    images = indexed(session, clock)
    images.managed_images(REGION, mine())
    assert sends.count == 1

    images.tag_images(REGION, [old], {"disabled-at": "2026-11-01T00:00:00Z"})
    images.disable_image(REGION, old)
    images.set_deregistration_protection(REGION, old, True)
    (seen,) = images.managed_images(REGION, mine())
    assert (seen.state, seen.tags["disabled-at"], seen.protected) == (
        "disabled",
        "2026-11-01T00:00:00Z",
        True,
    )

    images.enable_image(REGION, old)
    images.untag_images(REGION, [old], ["disabled-at"])
    (seen,) = images.managed_images(REGION, mine())
    assert (seen.state, "disabled-at" in seen.tags) == ("available", False)
    assert sends.count == 1

    clock.now += PERIOD
    assert images.refresh_due() == 0
    (reloaded,) = images.managed_images(REGION, mine())
    assert (reloaded.state, reloaded.tags) == ("available", mine(status="deprecated"))


def test_a_failed_refresh_keeps_the_last_good_index_and_says_how_old_it_is(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    mine_now = register_built_ami(client, "a-1", tags=mine(status="active"))
    clock = Clock()
    sends = Sends(session, "DescribeImages")
    images = indexed(session, clock, max_attempts=1)
    images.managed_images(REGION, mine())
    sends.answer = ec2_error(503, "Unavailable")

    clock.now += PERIOD
    assert images.refresh_due() == 1
    assert [i.image_id for i in images.managed_images(REGION, mine())] == [mine_now]
    assert images.stale(REGION) == ""
    clock.now += 5 * PERIOD
    images.refresh_due()
    assert "Unavailable" in images.stale(REGION)
    assert f"{REGION} was last refreshed at " in images.stale(REGION)
    first = images.stale(REGION)
    clock.now += 5 * PERIOD
    images.refresh_due()
    assert images.stale(REGION) == first, "the text must not change from sync to sync (rule 3)"


def test_the_exact_view_reads_ec2_and_puts_what_it_read_into_the_index(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    images = indexed(session, Clock())
    assert images.managed_images(REGION, mine()) == []
    # Another replica tags an AMI: this index cannot know, the exact view must.
    other = register_built_ami(client, "a-1", tags=mine(status="active"))
    assert images.managed_images(REGION, mine()) == []

    assert [i.image_id for i in images.exact().managed_images(REGION, mine())] == [other]
    assert [i.image_id for i in images.managed_images(REGION, mine())] == [other]


def test_the_in_memory_view_answers_what_is_loaded_and_refuses_anything_that_needs_aws(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    active = register_built_ami(client, "a-1", tags=mine(status="active"))
    images = indexed(session, Clock())
    memory = images.in_memory()
    with pytest.raises(NotInMemory):
        memory.managed_images(REGION, mine())
    with pytest.raises(NotInMemory):
        memory.base_image(REGION, filter_source(SEED_FILTERS))
    with pytest.raises(NotInMemory):
        memory.parameter_value(REGION, PARAMETER)

    images.managed_images(REGION, mine())
    base = images.base_image(REGION, filter_source(SEED_FILTERS))
    images.parameter_value(REGION, PARAMETER)
    sends = Sends(session, "DescribeImages")

    assert [i.image_id for i in memory.managed_images(REGION, mine())] == [active]
    assert memory.base_image(REGION, filter_source(SEED_FILTERS)) == base
    assert memory.parameter_value(REGION, PARAMETER) is None  # known not to exist: an answer, not a miss
    refused: list[Callable[[], object]] = [
        memory.exact,
        lambda: memory.images_by_id(REGION, [active]),
        lambda: memory.images_in_use(REGION, [active]),
        lambda: memory.tag_images(REGION, [active], {"status": "deprecated"}),
        lambda: memory.deregister_image(REGION, active),
        lambda: memory.put_parameter(REGION, PARAMETER, active),
        lambda: memory.last_launched(REGION, active),
        lambda: memory.disable_image(REGION, active),
        lambda: memory.enable_image(REGION, active),
        lambda: memory.untag_images(REGION, [active], ["disabled-at"]),
        lambda: memory.set_deregistration_protection(REGION, active, True),
    ]
    for call in refused:
        with pytest.raises(NotInMemory):
            call()
    assert sends.count == 0
    (described,) = client.describe_images(ImageIds=[active])["Images"]
    assert {t["Key"]: t["Value"] for t in described["Tags"]} == mine(status="active")
