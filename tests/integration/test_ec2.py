"""The EC2 adapter against a real moto server through real boto3, plus faults injected on the wire."""

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from app.aws.ec2 import AwsError, Ec2, ImageSource
from app.core.base_image import BaseImageMissing, filter_source
from app.model.spec import AmiFilter
from app.model.tags import Image
from tests.aws import (
    EKS_130_X86_FILTERS,
    EKS_OWNER,
    NEWEST_EKS_130_X86,
    NEWEST_EKS_130_X86_NAME,
    OLDEST_EKS_130_X86,
    REGION,
    Sends,
    ec2_client,
    ec2_error,
    ec2_response,
    free_port,
    register_built_ami,
    tags_of,
)

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzzSECRETKEY"
SEED_FILTERS = [AmiFilter.model_validate(f) for f in EKS_130_X86_FILTERS]
# Half of Metacontroller's 10 s hook timeout. botocore's defaults (60 s timeouts, retries with up to 20 s
# backoff) would blow far past it; bounds any tighter would only measure the retry jitter and this machine.
WITHIN_BUDGET = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def management(created_by: str = "builder-a", **overrides: str) -> dict[str, str]:
    tags = {
        "brought-to-you-by": "opsy-the-ami-operator",
        "cluster-name": "prod",
        "created-by": created_by,
        "packer-repo": "https://git.example/packer.git",
        "packer-repo-branch": "main",
    }
    tags.update(overrides)
    return tags


@pytest.fixture
def session(ec2_env: str) -> boto3.session.Session:
    return boto3.session.Session()


# --- base image lookup ------------------------------------------------------------------------------


def test_newest_base_image_is_the_newest_130_x86_image_of_the_eks_account(
    session: boto3.session.Session,
) -> None:
    image = Ec2(session=session).base_image(REGION, filter_source(SEED_FILTERS))

    assert isinstance(image, Image)
    assert image.image_id == NEWEST_EKS_130_X86
    assert image.name == NEWEST_EKS_130_X86_NAME
    assert image.state == "available"
    assert image.creation_date == datetime(2024, 10, 24, 18, 5, 40, tzinfo=UTC)


def test_no_matching_image_is_missing_naming_the_filters(session: boto3.session.Session) -> None:
    filters = [AmiFilter(name="name", values=["amazon-eks-node-al2023-x86_64-standard-1.99*"])]

    found = Ec2(session=session).base_image(REGION, filter_source(filters))

    assert found == BaseImageMissing(
        f"No AMI in {REGION} matches name=amazon-eks-node-al2023-x86_64-standard-1.99*"
    )


def test_no_filters_asks_nothing(session: boto3.session.Session) -> None:
    sends = Sends(session, "DescribeImages")

    assert isinstance(Ec2(session=session).base_image(REGION, filter_source([])), BaseImageMissing)
    assert sends.count == 0


def test_equal_creation_dates_are_broken_by_name_then_id(session: boto3.session.Session) -> None:
    def item(image_id: str, name: str) -> str:
        return (
            f"<item><imageId>{image_id}</imageId><name>{name}</name><imageState>available</imageState>"
            "<creationDate>2024-10-24T18:05:40.000Z</creationDate></item>"
        )

    listing = ec2_response(
        200,
        "<DescribeImagesResponse><requestId>r</requestId><imagesSet>"
        + item("ami-0000000000000000b", "eks-b")
        + item("ami-000000000000000a2", "eks-a")
        + item("ami-000000000000000a1", "eks-a")
        + "</imagesSet></DescribeImagesResponse>",
    )
    Sends(session, "DescribeImages", answer=listing)

    image = Ec2(session=session).base_image(REGION, filter_source(SEED_FILTERS))

    assert isinstance(image, Image)
    assert image.image_id == "ami-0000000000000000b"


def test_one_client_per_region(session: boto3.session.Session) -> None:
    created: list[str] = []
    session.events.register("creating-client-class.ec2", lambda **_: created.append("ec2"))
    ec2 = Ec2(session=session)

    ec2.images_by_id(REGION, [NEWEST_EKS_130_X86])
    ec2.managed_images(REGION, management())
    ec2.images_by_id("eu-west-1", [NEWEST_EKS_130_X86])

    assert len(created) == 2


# --- our AMIs ------------------------------------------------------------------------------------------


def test_managed_images_need_all_five_tags_exactly_newest_first(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    older = register_built_ami(
        client, "a-1", tags={**management(), "create-timestamp": "2024-11-01T10:00:00Z"}
    )
    newer = register_built_ami(
        client, "a-2", tags={**management(), "create-timestamp": "2024-11-03T10:00:00Z"}
    )
    middle = register_built_ami(
        client, "a-3", tags={**management(), "create-timestamp": "2024-11-02T10:00:00Z"}
    )
    four_of_five = management()
    del four_of_five["packer-repo-branch"]
    register_built_ami(client, "partial", tags=four_of_five)
    register_built_ami(client, "other-builder", tags=management("builder-b"))
    register_built_ami(client, "other-branch", tags=management(**{"packer-repo-branch": "dev"}))
    # Tagged like ours but owned by the EKS account: only our own account's AMIs count.
    client.create_tags(
        Resources=[NEWEST_EKS_130_X86], Tags=[{"Key": k, "Value": v} for k, v in management().items()]
    )

    images = Ec2(session=session).managed_images(REGION, management())

    assert [image.image_id for image in images] == [newer, middle, older]
    assert images[0].tags["created-by"] == "builder-a"


def test_managed_images_match_literally_empty_and_pattern_like_values(
    ec2_env: str, session: boto3.session.Session
) -> None:
    client = ec2_client(ec2_env)
    mine = register_built_ami(
        client, "mine", tags=management(**{"cluster-name": "", "packer-repo": "https://g/*"})
    )
    register_built_ami(
        client, "named-cluster", tags=management(**{"cluster-name": "prod", "packer-repo": "https://g/*"})
    )
    register_built_ami(
        client, "wildcard-match", tags=management(**{"cluster-name": "", "packer-repo": "https://g/x"})
    )

    images = Ec2(session=session).managed_images(
        REGION, management(**{"cluster-name": "", "packer-repo": "https://g/*"})
    )

    assert [image.image_id for image in images] == [mine]


def test_images_by_id_skips_unknown_and_malformed_ids(ec2_env: str, session: boto3.session.Session) -> None:
    built = register_built_ami(ec2_client(ec2_env), "built", tags={"status": "active"})

    images = Ec2(session=session).images_by_id(
        REGION, [built, "ami-0123456789abcdef0", "not-an-ami", built, OLDEST_EKS_130_X86]
    )

    assert [image.image_id for image in images] == [built, OLDEST_EKS_130_X86]
    assert images[0].tags == {"status": "active"}
    assert images[1].creation_date == datetime(2024, 9, 17, 21, 10, 5, tzinfo=UTC)


def test_images_by_id_of_nothing_asks_nothing(session: boto3.session.Session) -> None:
    sends = Sends(session, "DescribeImages")

    assert Ec2(session=session).images_by_id(REGION, []) == []
    assert sends.count == 0


def test_tag_images_is_idempotent_and_keeps_other_tags(ec2_env: str, session: boto3.session.Session) -> None:
    client = ec2_client(ec2_env)
    image_id = register_built_ami(client, "built", tags={"keep": "me"})
    lifecycle = {
        "status": "active",
        "create-timestamp": "2024-11-03T10:00:00Z",
        "base-ami": NEWEST_EKS_130_X86,
    }
    ec2 = Ec2(session=session)

    ec2.tag_images(REGION, [image_id], lifecycle)
    ec2.tag_images(REGION, [image_id], lifecycle)

    assert tags_of(client, image_id) == {"keep": "me", **lifecycle}


# --- faults --------------------------------------------------------------------------------------------


@pytest.fixture
def secret_env(ec2_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


def assert_clean(error: AwsError) -> None:
    for text in (error.message, str(error), repr(error)):
        assert SECRET not in text
        assert "SECRETKEY" not in text


def timed_failure(call: Callable[[], object]) -> tuple[AwsError, float]:
    """The AwsError `call` raises, and how long it took to give up."""
    started = time.monotonic()
    with pytest.raises(AwsError) as caught:
        call()
    return caught.value, time.monotonic() - started


@pytest.mark.usefixtures("secret_env")
def test_unreachable_endpoint_is_temporary_and_quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", f"http://127.0.0.1:{free_port()}")
    ec2 = Ec2()

    error, elapsed = timed_failure(lambda: ec2.base_image(REGION, filter_source(SEED_FILTERS)))

    assert error.code == "EndpointConnectionError"
    assert error.temporary
    assert elapsed < WITHIN_BUDGET
    assert_clean(error)


@pytest.fixture
def unanswered_endpoint() -> Iterator[str]:
    """A port whose accept queue is full: the kernel drops further SYNs, so connecting hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(address)
        fillers.append(filler)
    yield f"http://127.0.0.1:{address[1]}"
    for sock in [*fillers, listener]:
        sock.close()


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize(
    ("endpoint", "code"),
    [("unanswered_endpoint", "ConnectTimeout"), ("slow_endpoint", "ReadTimeout")],
)
def test_a_hanging_endpoint_times_out_as_temporary_within_the_budget(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, endpoint: str, code: str
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", request.getfixturevalue(endpoint))
    ec2 = Ec2(connect_timeout=0.5, read_timeout=0.5, max_attempts=2)

    error, elapsed = timed_failure(lambda: ec2.managed_images(REGION, management()))

    assert error.code == code
    assert error.temporary
    assert 0.5 * 2 <= elapsed < WITHIN_BUDGET, "two attempts, each cut at the timeout"
    assert_clean(error)


@pytest.mark.usefixtures("secret_env")
def test_throttling_is_temporary_after_a_bounded_number_of_attempts() -> None:
    session = boto3.session.Session()
    sends = Sends(session, "DescribeImages", answer=ec2_error(503, "RequestLimitExceeded"))
    ec2 = Ec2(session=session)

    error, elapsed = timed_failure(lambda: ec2.base_image(REGION, filter_source(SEED_FILTERS)))

    assert error.code == "RequestLimitExceeded"
    assert error.temporary
    assert sends.count == 2
    assert elapsed < WITHIN_BUDGET
    assert_clean(error)


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize(
    ("status", "code", "temporary", "attempts"),
    [
        (503, "Unavailable", True, 2),
        (500, "InternalError", True, 2),
        (403, "UnauthorizedOperation", False, 1),
        (401, "AuthFailure", False, 1),
        (400, "InvalidParameterValue", False, 1),
    ],
)
def test_error_responses_are_classified(status: int, code: str, temporary: bool, attempts: int) -> None:
    session = boto3.session.Session()
    sends = Sends(session, "CreateTags", answer=ec2_error(status, code))
    ec2 = Ec2(session=session)

    with pytest.raises(AwsError) as caught:
        ec2.tag_images(REGION, [NEWEST_EKS_130_X86], {"status": "active"})

    assert (caught.value.code, caught.value.temporary) == (code, temporary)
    assert sends.count == attempts
    assert caught.value.message == f"EC2 CreateTags in {REGION}: {code} happened"
    assert_clean(caught.value)


@pytest.mark.usefixtures("secret_env")
def test_a_response_that_is_not_ec2_is_temporary() -> None:
    session = boto3.session.Session()
    Sends(session, "DescribeImages", answer=ec2_response(200, "<html>captive portal</html"))

    with pytest.raises(AwsError) as caught:
        Ec2(session=session).managed_images(REGION, management())

    assert caught.value.code == "InvalidResponse"
    assert caught.value.temporary
    assert "\n" not in caught.value.message
    assert_clean(caught.value)


@pytest.mark.usefixtures("ec2_env")
def test_missing_credentials_are_permanent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(AwsError) as caught:
        Ec2().images_by_id(REGION, [NEWEST_EKS_130_X86])

    assert caught.value.code == "NoCredentialsError"
    assert not caught.value.temporary


def test_ec2_is_an_image_source() -> None:
    source: ImageSource = Ec2()
    assert source is not None


# --- local mode ----------------------------------------------------------------------------------------


def test_local_mode_serves_the_sample_eks_images() -> None:
    # A fresh interpreter: moto reads MOTO_AMIS_PATH on import, which this process may have done already.
    script = (
        "import boto3\n"
        "from app.local import start_local_ec2\n"
        "server = start_local_ec2()\n"
        f"images = boto3.client('ec2').describe_images(Owners=['{EKS_OWNER}'])['Images']\n"
        "print(sorted(image['ImageId'] for image in images))\n"
        "server.stop()\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )

    assert NEWEST_EKS_130_X86 in done.stdout
    assert OLDEST_EKS_130_X86 in done.stdout
