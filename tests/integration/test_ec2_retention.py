"""The EC2 adapter's retention and distribution calls against a real moto server through real boto3.

moto does not implement EnableImageDeprecation, so its exact request is checked with botocore's Stubber.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber

from app.aws.ec2 import AwsError, Ec2
from tests.aws import (
    NEWEST_EKS_130_X86,
    REGION,
    Sends,
    ec2_client,
    ec2_error,
    ec2_response,
    json_error,
    register_built_ami,
)

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ssm import SSMClient

ARM64_EKS_130 = "ami-0a1f30a1b2c3d4e05"
PARAMETER = "/opsy/prod/builder-a/ami"
DEPRECATE_AT = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)


@pytest.fixture
def session(ec2_env: str) -> boto3.session.Session:
    return boto3.session.Session()


@pytest.fixture
def client(ec2_env: str) -> "EC2Client":
    return ec2_client(ec2_env)


@pytest.fixture
def ssm(ec2_env: str) -> "SSMClient":
    return boto3.session.Session().client("ssm", region_name=REGION, endpoint_url=ec2_env)


def snapshot_exists(client: "EC2Client", snapshot_id: str) -> bool:
    found = client.describe_snapshots(Filters=[{"Name": "snapshot-id", "Values": [snapshot_id]}])
    return bool(found["Snapshots"])


def launch(client: "EC2Client", image_id: str) -> str:
    reservation = client.run_instances(ImageId=image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    return reservation["Instances"][0]["InstanceId"]


# --- what an Image carries -----------------------------------------------------------------------------


def test_a_built_ami_carries_its_architecture_and_snapshots(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    image_id = register_built_ami(client, "built")
    (raw,) = client.describe_images(ImageIds=[image_id])["Images"]
    expected = tuple(mapping["Ebs"]["SnapshotId"] for mapping in raw["BlockDeviceMappings"])

    (image,) = Ec2(session=session).images_by_id(REGION, [image_id])

    assert image.architecture == "x86_64"
    assert image.snapshot_ids == expected
    assert len(expected) == 1
    assert snapshot_exists(client, expected[0])
    assert image.deprecation_time is None


def test_architecture_comes_from_ec2(session: boto3.session.Session) -> None:
    (image,) = Ec2(session=session).images_by_id(REGION, [ARM64_EKS_130])

    assert image.architecture == "arm64"


def test_deprecation_time_and_snapshots_are_read_from_the_wire(session: boto3.session.Session) -> None:
    """moto never reports a DeprecationTime, so EC2's answer is given on the wire instead."""

    def item(image_id: str, deprecation: str) -> str:
        return (
            f"<item><imageId>{image_id}</imageId><imageState>available</imageState>"
            "<architecture>arm64</architecture>"
            f"<creationDate>2024-10-24T18:05:40.000Z</creationDate>{deprecation}"
            "<blockDeviceMapping>"
            "<item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-0b</snapshotId></ebs></item>"
            "<item><deviceName>/dev/sdb</deviceName><virtualName>ephemeral0</virtualName></item>"
            "<item><deviceName>/dev/sdc</deviceName><ebs><snapshotId>snap-0a</snapshotId></ebs></item>"
            "</blockDeviceMapping></item>"
        )

    Sends(
        session,
        "DescribeImages",
        answer=ec2_response(
            200,
            "<DescribeImagesResponse><requestId>r</requestId><imagesSet>"
            + item("ami-000000000000000a1", "<deprecationTime>2025-03-01T12:30:00.000Z</deprecationTime>")
            + item("ami-000000000000000a2", "<deprecationTime>soon</deprecationTime>")
            + item("ami-000000000000000a3", "")
            + "</imagesSet></DescribeImagesResponse>",
        ),
    )

    images = Ec2(session=session).images_by_id(
        REGION, ["ami-000000000000000a1", "ami-000000000000000a2", "ami-000000000000000a3"]
    )

    assert [image.deprecation_time for image in images] == [
        datetime(2025, 3, 1, 12, 30, tzinfo=UTC),
        None,
        None,
    ]
    assert {image.snapshot_ids for image in images} == {("snap-0b", "snap-0a")}, "mapping order, EBS only"
    assert {image.architecture for image in images} == {"arm64"}


def test_managed_images_include_deprecated_and_disabled_ones(session: boto3.session.Session) -> None:
    """Real EC2 leaves disabled AMIs out of DescribeImages, even for their owner, unless asked."""
    asked: list[dict[str, Any]] = []
    session.events.register(
        "before-parameter-build.ec2.DescribeImages", lambda params, **_: asked.append(dict(params))
    )

    Ec2(session=session).managed_images(REGION, {"created-by": "builder-a"})

    assert [(params.get("IncludeDeprecated"), params.get("IncludeDisabled")) for params in asked] == [
        (True, True)
    ]


def test_protection_and_last_launch_are_read_from_the_wire(session: boto3.session.Session) -> None:
    """moto reports neither, so EC2's answer is given on the wire; a time that cannot be read is no launch."""

    def item(image_id: str, extra: str) -> str:
        return (
            f"<item><imageId>{image_id}</imageId><imageState>available</imageState>"
            f"<creationDate>2024-10-24T18:05:40.000Z</creationDate>{extra}</item>"
        )

    Sends(
        session,
        "DescribeImages",
        answer=ec2_response(
            200,
            "<DescribeImagesResponse><requestId>r</requestId><imagesSet>"
            + item(
                "ami-000000000000000b1",
                "<deregistrationProtection>enabled-without-cooldown</deregistrationProtection>"
                "<lastLaunchedTime>2025-03-01T12:30:00Z</lastLaunchedTime>",
            )
            + item(
                "ami-000000000000000b2",
                "<deregistrationProtection>enabled-with-cooldown</deregistrationProtection>"
                "<lastLaunchedTime>yesterday</lastLaunchedTime>",
            )
            + item("ami-000000000000000b3", "<deregistrationProtection>disabled</deregistrationProtection>")
            + item("ami-000000000000000b4", "")
            + "</imagesSet></DescribeImagesResponse>",
        ),
    )

    images = Ec2(session=session).images_by_id(REGION, [f"ami-000000000000000b{n}" for n in range(1, 5)])

    assert [(image.protected, image.last_launched) for image in images] == [
        (True, datetime(2025, 3, 1, 12, 30, tzinfo=UTC)),
        (True, None),
        (False, None),
        (False, None),
    ]


# --- disabling and enabling ----------------------------------------------------------------------------


def test_a_disabled_ami_is_still_listed_and_enabling_brings_it_back(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    tags = {"created-by": "builder-a", "disabled-at": "2026-11-01T00:00:00Z", "status": "deprecated"}
    image_id = register_built_ami(client, "old", tags=tags)
    ec2 = Ec2(session=session)

    ec2.disable_image(REGION, image_id)
    ec2.disable_image(REGION, image_id)  # a retry changes nothing
    assert [(i.image_id, i.state) for i in ec2.managed_images(REGION, {"created-by": "builder-a"})] == [
        (image_id, "disabled")
    ]

    ec2.enable_image(REGION, image_id)
    ec2.untag_images(REGION, [image_id], ["disabled-at"])
    ec2.untag_images(REGION, [image_id], ["disabled-at"])  # a tag that is not there is no error

    (image,) = ec2.managed_images(REGION, {"created-by": "builder-a"})
    assert image.state == "available"
    assert image.tags == {"created-by": "builder-a", "status": "deprecated"}


def test_disabling_an_ami_that_is_gone_is_a_no_op_but_enabling_it_is_an_error(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    image_id = register_built_ami(client, "gone")
    client.deregister_image(ImageId=image_id)
    ec2 = Ec2(session=session)

    ec2.disable_image(REGION, image_id)
    with pytest.raises(AwsError) as caught:
        ec2.enable_image(REGION, image_id)

    assert caught.value.code in {"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"}


def test_untagging_nothing_asks_nothing(session: boto3.session.Session) -> None:
    sends = Sends(session, "DeleteTags")

    Ec2(session=session).untag_images(REGION, [], ["disabled-at"])
    Ec2(session=session).untag_images(REGION, ["ami-1"], [])

    assert sends.count == 0


# --- what is in use ------------------------------------------------------------------------------------


def test_nothing_asked_is_nothing_in_use_without_a_call(session: boto3.session.Session) -> None:
    instances = Sends(session, "DescribeInstances")
    templates = Sends(session, "DescribeLaunchTemplateVersions")

    assert Ec2(session=session).images_in_use(REGION, []) == {}
    assert (instances.count, templates.count) == (0, 0)


def test_running_instances_hold_their_ami_and_the_lowest_instance_id_is_named(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    image_id = register_built_ami(client, "built")
    other = register_built_ami(client, "other")
    first = min(launch(client, image_id), launch(client, image_id))
    launch(client, other)

    in_use = Ec2(session=session).images_in_use(REGION, [image_id, NEWEST_EKS_130_X86])

    assert in_use == {image_id: f"instance {first}"}


def test_stopped_and_terminated_instances_do_not_hold_their_ami(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    stopped_image = register_built_ami(client, "stopped")
    terminated_image = register_built_ami(client, "terminated")
    client.stop_instances(InstanceIds=[launch(client, stopped_image)])
    client.terminate_instances(InstanceIds=[launch(client, terminated_image)])

    assert Ec2(session=session).images_in_use(REGION, [stopped_image, terminated_image]) == {}


def test_only_the_latest_and_default_launch_template_versions_hold_their_ami(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    """moto answers DescribeLaunchTemplateVersions without applying its image-id filter and without pages
    (at most MaxResults versions, no NextToken): the adapter checks the match itself, and this test keeps
    to a few templates."""
    old, default, latest, unused = (register_built_ami(client, f"ami-{n}") for n in range(4))
    pinned = client.create_launch_template(
        LaunchTemplateName="pinned", LaunchTemplateData={"ImageId": default}
    )
    pinned_id = pinned["LaunchTemplate"]["LaunchTemplateId"]
    client.create_launch_template_version(LaunchTemplateId=pinned_id, LaunchTemplateData={"ImageId": old})
    client.create_launch_template_version(LaunchTemplateId=pinned_id, LaunchTemplateData={"ImageId": unused})
    moving = client.create_launch_template(LaunchTemplateName="moving", LaunchTemplateData={"ImageId": old})
    moving_id = moving["LaunchTemplate"]["LaunchTemplateId"]
    client.create_launch_template_version(LaunchTemplateId=moving_id, LaunchTemplateData={"ImageId": latest})
    client.modify_launch_template(LaunchTemplateId=moving_id, DefaultVersion="2")
    client.create_launch_template_version(LaunchTemplateId=pinned_id, LaunchTemplateData={"ImageId": unused})
    client.create_launch_template(
        LaunchTemplateName="unrelated", LaunchTemplateData={"InstanceType": "t3.micro"}
    )

    in_use = Ec2(session=session).images_in_use(REGION, [old, default, latest])

    # `old` is only in version 2 of "pinned" and version 1 of "moving": neither latest nor default.
    assert in_use == {
        default: f"launch template {pinned_id} (pinned) version 1",
        latest: f"launch template {moving_id} (moving) version 2",
    }


def test_an_instance_is_named_before_a_template_and_templates_are_not_asked_when_all_are_explained(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    image_id = register_built_ami(client, "built")
    client.create_launch_template(LaunchTemplateName="nodes", LaunchTemplateData={"ImageId": image_id})
    instance_id = launch(client, image_id)
    templates = Sends(session, "DescribeLaunchTemplateVersions")

    in_use = Ec2(session=session).images_in_use(REGION, [image_id, image_id])

    assert in_use == {image_id: f"instance {instance_id}"}
    assert templates.count == 0


# --- removing -----------------------------------------------------------------------------------------


def test_deregister_then_delete_snapshots_and_repeating_is_a_no_op(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    image_id = register_built_ami(client, "expired")
    kept = register_built_ami(client, "kept")
    ec2 = Ec2(session=session)
    (image,) = ec2.images_by_id(REGION, [image_id])
    (snapshot_id,) = image.snapshot_ids

    for _ in range(2):
        ec2.deregister_image(REGION, image_id)
        ec2.delete_snapshot(REGION, snapshot_id)

    assert [found.image_id for found in ec2.images_by_id(REGION, [image_id, kept])] == [kept]
    assert not snapshot_exists(client, snapshot_id)


def test_removing_what_never_existed_is_a_no_op(session: boto3.session.Session) -> None:
    ec2 = Ec2(session=session)

    ec2.deregister_image(REGION, "ami-0123456789abcdef0")
    ec2.delete_snapshot(REGION, "snap-0123456789abcdef0")


# --- parameters and snapshot tags ------------------------------------------------------------------------


def test_a_published_parameter_is_an_image_parameter_that_can_be_replaced(
    client: "EC2Client", ssm: "SSMClient", session: boto3.session.Session
) -> None:
    first = register_built_ami(client, "first")
    second = register_built_ami(client, "second")
    ec2 = Ec2(session=session)

    assert ec2.parameter_value(REGION, PARAMETER) is None
    ec2.put_parameter(REGION, PARAMETER, first)
    assert ec2.parameter_value(REGION, PARAMETER) == first
    ec2.put_parameter(REGION, PARAMETER, second)

    stored = ssm.get_parameter(Name=PARAMETER)["Parameter"]
    assert (stored["Value"], stored["Type"], stored["DataType"]) == (second, "String", "aws:ec2:image")
    assert ec2.parameter_value(REGION, PARAMETER) == second


def test_tag_snapshots_is_idempotent_and_keeps_other_tags(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    ec2 = Ec2(session=session)
    (image,) = ec2.images_by_id(REGION, [register_built_ami(client, "built")])
    client.create_tags(Resources=list(image.snapshot_ids), Tags=[{"Key": "keep", "Value": "me"}])
    tags = {"created-by": "builder-a", "brought-to-you-by": "opsy-the-ami-operator"}

    ec2.tag_snapshots(REGION, image.snapshot_ids, tags)
    ec2.tag_snapshots(REGION, image.snapshot_ids, tags)

    (snapshot,) = client.describe_snapshots(SnapshotIds=list(image.snapshot_ids))["Snapshots"]
    assert {tag["Key"]: tag["Value"] for tag in snapshot["Tags"]} == {"keep": "me", **tags}


def test_tagging_no_snapshots_asks_nothing(session: boto3.session.Session) -> None:
    sends = Sends(session, "CreateTags")

    Ec2(session=session).tag_snapshots(REGION, [], {"created-by": "builder-a"})

    assert sends.count == 0


# --- deprecation ---------------------------------------------------------------------------------------


class OneClient(boto3.session.Session):
    """A session handing out one prepared client: how a botocore Stubber gets under an Ec2."""

    def __init__(self, client: "EC2Client") -> None:
        super().__init__()
        self._prepared = client

    def client(self, *_: Any, **__: Any) -> Any:
        return self._prepared


@pytest.fixture
def stubbed() -> tuple[Ec2, Stubber]:
    client = boto3.session.Session().client(
        "ec2", region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    stubber = Stubber(client)
    stubber.activate()
    return Ec2(session=OneClient(client)), stubber


def test_enable_deprecation_asks_ec2_to_deprecate_the_ami_at_the_time(stubbed: tuple[Ec2, Stubber]) -> None:
    ec2, stubber = stubbed
    stubber.add_response(
        "enable_image_deprecation",
        {"Return": True},
        expected_params={"ImageId": NEWEST_EKS_130_X86, "DeprecateAt": DEPRECATE_AT},
    )

    ec2.enable_deprecation(REGION, NEWEST_EKS_130_X86, DEPRECATE_AT)

    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("status", "code", "temporary"),
    [
        (400, "InvalidParameterValue", False),
        (403, "UnauthorizedOperation", False),
        (503, "Unavailable", True),
    ],
)
def test_a_refused_deprecation_is_an_aws_error(
    stubbed: tuple[Ec2, Stubber], status: int, code: str, temporary: bool
) -> None:
    ec2, stubber = stubbed
    stubber.add_client_error(
        "enable_image_deprecation", service_error_code=code, service_message="no", http_status_code=status
    )

    with pytest.raises(AwsError) as caught:
        ec2.enable_deprecation(REGION, NEWEST_EKS_130_X86, DEPRECATE_AT)

    assert (caught.value.code, caught.value.temporary) == (code, temporary)
    assert caught.value.message == f"EC2 EnableImageDeprecation in {REGION}: no"


def test_deprecation_against_moto_fails_as_an_aws_error(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    """moto has no EnableImageDeprecation: its server answers with an HTML 500 page, which reads as a
    response that is not EC2's (InvalidResponse) and so as temporary, the same as a 500 from EC2 would."""
    image_id = register_built_ami(client, "built")

    with pytest.raises(AwsError) as caught:
        Ec2(session=session, max_attempts=1).enable_deprecation(REGION, image_id, DEPRECATE_AT)

    assert caught.value.code == "InvalidResponse"
    assert caught.value.temporary
    assert caught.value.message.startswith(f"EC2 EnableImageDeprecation in {REGION}: ")


@pytest.mark.parametrize("enabled", [True, False])
def test_deregistration_protection_is_turned_on_without_cooldown_and_off(
    stubbed: tuple[Ec2, Stubber], enabled: bool
) -> None:
    ec2, stubber = stubbed
    operation = f"{'enable' if enabled else 'disable'}_image_deregistration_protection"
    stubber.add_response(operation, {"Return": "ok"}, expected_params={"ImageId": NEWEST_EKS_130_X86})

    ec2.set_deregistration_protection(REGION, NEWEST_EKS_130_X86, enabled)

    stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("answer", "launched"),
    [
        (
            {"LastLaunchedTime": {"Value": "2026-11-20T08:15:00.000Z"}},
            datetime(2026, 11, 20, 8, 15, tzinfo=UTC),
        ),
        ({"LastLaunchedTime": {}}, None),
        ({}, None),
    ],
    ids=["launched", "never-launched", "left-out"],
)
def test_last_launched_is_read_from_the_ami_attribute(
    stubbed: tuple[Ec2, Stubber], answer: dict[str, Any], launched: datetime | None
) -> None:
    ec2, stubber = stubbed
    stubber.add_response(
        "describe_image_attribute",
        {"ImageId": NEWEST_EKS_130_X86, **answer},
        expected_params={"ImageId": NEWEST_EKS_130_X86, "Attribute": "lastLaunchedTime"},
    )

    assert ec2.last_launched(REGION, NEWEST_EKS_130_X86) == launched
    stubber.assert_no_pending_responses()


def test_a_last_launch_that_cannot_be_read_is_an_aws_error(stubbed: tuple[Ec2, Stubber]) -> None:
    ec2, stubber = stubbed
    stubber.add_response(
        "describe_image_attribute",
        {"ImageId": NEWEST_EKS_130_X86, "LastLaunchedTime": {"Value": "last tuesday"}},
    )

    with pytest.raises(AwsError) as caught:
        ec2.last_launched(REGION, NEWEST_EKS_130_X86)

    assert (caught.value.code, caught.value.temporary) == ("InvalidResponse", True)
    assert "last tuesday" in caught.value.message


def test_last_launched_against_moto_fails_as_an_aws_error(
    client: "EC2Client", session: boto3.session.Session
) -> None:
    """moto has no lastLaunchedTime: it answers with a server error, which retention reads as "used"."""
    image_id = register_built_ami(client, "built")

    with pytest.raises(AwsError):
        Ec2(session=session, max_attempts=1).last_launched(REGION, image_id)


# --- failures ------------------------------------------------------------------------------------------

Call = Callable[[Ec2], object]
CALLS: list[tuple[str, str, Call]] = [
    ("ec2", "DeregisterImage", lambda ec2: ec2.deregister_image(REGION, NEWEST_EKS_130_X86)),
    ("ec2", "DeleteSnapshot", lambda ec2: ec2.delete_snapshot(REGION, "snap-0123456789abcdef0")),
    ("ec2", "DescribeInstances", lambda ec2: ec2.images_in_use(REGION, [NEWEST_EKS_130_X86])),
    ("ec2", "DescribeLaunchTemplateVersions", lambda ec2: ec2.images_in_use(REGION, [NEWEST_EKS_130_X86])),
    ("ec2", "CreateTags", lambda ec2: ec2.tag_snapshots(REGION, ["snap-0123456789abcdef0"], {"a": "b"})),
    ("ec2", "EnableImageDeprecation", lambda ec2: ec2.enable_deprecation(REGION, "ami-1", DEPRECATE_AT)),
    ("ec2", "DescribeImageAttribute", lambda ec2: ec2.last_launched(REGION, NEWEST_EKS_130_X86)),
    ("ec2", "DisableImage", lambda ec2: ec2.disable_image(REGION, NEWEST_EKS_130_X86)),
    ("ec2", "EnableImage", lambda ec2: ec2.enable_image(REGION, NEWEST_EKS_130_X86)),
    ("ec2", "DeleteTags", lambda ec2: ec2.untag_images(REGION, [NEWEST_EKS_130_X86], ["disabled-at"])),
    (
        "ec2",
        "EnableImageDeregistrationProtection",
        lambda ec2: ec2.set_deregistration_protection(REGION, NEWEST_EKS_130_X86, True),
    ),
    (
        "ec2",
        "DisableImageDeregistrationProtection",
        lambda ec2: ec2.set_deregistration_protection(REGION, NEWEST_EKS_130_X86, False),
    ),
    ("ssm", "GetParameter", lambda ec2: ec2.parameter_value(REGION, PARAMETER)),
    ("ssm", "PutParameter", lambda ec2: ec2.put_parameter(REGION, PARAMETER, NEWEST_EKS_130_X86)),
]


@pytest.mark.parametrize(("service", "operation", "call"), CALLS, ids=[op for _, op, _ in CALLS])
@pytest.mark.parametrize(("status", "temporary"), [(403, False), (503, True)])
def test_every_failure_is_an_aws_error(
    session: boto3.session.Session, service: str, operation: str, call: Call, status: int, temporary: bool
) -> None:
    code = "AccessDenied" if status == 403 else "ServiceUnavailable"
    answer: AWSResponse = ec2_error(status, code) if service == "ec2" else json_error(status, code)
    sends = Sends(session, operation, answer=answer, service=service)

    with pytest.raises(AwsError) as caught:
        call(Ec2(session=session))

    assert (caught.value.code, caught.value.temporary) == (code, temporary)
    assert caught.value.message == f"{service.upper()} {operation} in {REGION}: {code} happened"
    assert sends.count == (2 if temporary else 1)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda ec2: ec2.deregister_image(REGION, "ami-1"), "InvalidAMIID.Malformed"),
        (lambda ec2: ec2.deregister_image(REGION, NEWEST_EKS_130_X86), "InvalidSnapshot.NotFound"),
        (lambda ec2: ec2.delete_snapshot(REGION, "snap-1"), "InvalidAMIID.NotFound"),
        (lambda ec2: ec2.delete_snapshot(REGION, "snap-0123456789abcdef0"), "InvalidSnapshot.InUse"),
    ],
)
def test_only_a_missing_resource_counts_as_removed(
    session: boto3.session.Session, call: Call, code: str
) -> None:
    Sends(session, "DeregisterImage", answer=ec2_error(400, code))
    Sends(session, "DeleteSnapshot", answer=ec2_error(400, code))

    with pytest.raises(AwsError) as caught:
        call(Ec2(session=session))

    assert caught.value.code == code
    assert not caught.value.temporary


def test_a_parameter_the_caller_may_not_read_is_an_error_not_missing(session: boto3.session.Session) -> None:
    Sends(session, "GetParameter", answer=json_error(400, "AccessDeniedException"), service="ssm")

    with pytest.raises(AwsError) as caught:
        Ec2(session=session).parameter_value(REGION, PARAMETER)

    assert caught.value.code == "AccessDeniedException"
