"""Helpers for tests that talk to the moto server: clients, "built by Packer" AMIs, tag reads."""

import json
import socket
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from app import local

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# The local stand-in's own: its region, its sample catalogue, and a client aimed at it.
REGION = local.REGION
SAMPLE_AMIS_PATH = local.SAMPLE_AMIS_PATH
ec2_client = local.ec2_client
SAMPLE_AMIS: list[dict[str, Any]] = json.loads(SAMPLE_AMIS_PATH.read_text(encoding="utf-8"))

EKS_OWNER = "602401143452"
EKS_130_X86_FILTERS = [
    {"name": "name", "values": ["amazon-eks-node-al2023-x86_64-standard-1.30*"]},
    {"name": "owner-id", "values": [EKS_OWNER]},
]
NEWEST_EKS_130_X86 = "ami-0a1f30a1b2c3d4e03"
NEWEST_EKS_130_X86_NAME = "amazon-eks-node-al2023-x86_64-standard-1.30-v20241024"
OLDEST_EKS_130_X86 = "ami-0a1f30a1b2c3d4e01"


def free_port() -> int:
    """A loopback port nothing listens on (until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def register_built_ami(
    client: "EC2Client",
    name: str,
    *,
    tags: Mapping[str, str] | None = None,
    base_image_id: str = NEWEST_EKS_130_X86,
) -> str:
    """Do what a Packer amazon-ebs build does (launch the base, snapshot it, terminate); return the AMI id.

    The AMI is owned by moto's own account (`Owners=["self"]`) and its CreationDate is now.
    """
    reservation = client.run_instances(ImageId=base_image_id, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance_id = reservation["Instances"][0]["InstanceId"]
    extra: dict[str, Any] = {}
    if tags:
        extra["TagSpecifications"] = [
            {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ]
    image_id = client.create_image(InstanceId=instance_id, Name=name, **extra)["ImageId"]
    client.terminate_instances(InstanceIds=[instance_id])
    return image_id


def tags_of(client: "EC2Client", image_id: str) -> dict[str, str]:
    images = client.describe_images(ImageIds=[image_id])["Images"]
    return {tag["Key"]: tag.get("Value", "") for tag in images[0].get("Tags", [])}


class Sends:
    """Counts (and optionally answers) requests of one operation at the last moment before the wire."""

    def __init__(
        self,
        session: boto3.session.Session,
        operation: str,
        answer: AWSResponse | None = None,
        service: str = "ec2",
    ):
        self.count = 0
        self.answer = answer
        self.delay = 0.0
        session.events.register(f"before-send.{service}.{operation}", self._before_send)

    def _before_send(self, **_: Any) -> Any:  # a returned AWSResponse is used instead of sending
        self.count += 1
        time.sleep(self.delay)
        return self.answer


class _Body:
    def __init__(self, content: bytes) -> None:
        self._content = content

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._content


def ec2_response(status: int, xml: str) -> AWSResponse:
    headers = HTTPHeaders()
    headers["Content-Type"] = "text/xml"
    return AWSResponse("https://ec2.invalid/", status, headers, _Body(xml.encode()))


def ec2_error(status: int, code: str) -> AWSResponse:
    return ec2_response(
        status,
        f"<Response><Errors><Error><Code>{code}</Code><Message>{code} happened</Message></Error></Errors>"
        "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>",
    )


def json_error(status: int, code: str) -> AWSResponse:
    """An error as the JSON-protocol services (SSM) send it."""
    headers = HTTPHeaders()
    headers["Content-Type"] = "application/x-amz-json-1.1"
    body = json.dumps({"__type": code, "message": f"{code} happened"})
    return AWSResponse("https://ssm.invalid/", status, headers, _Body(body.encode()))
