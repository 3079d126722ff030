"""Run the hook on a laptop: an embedded moto EC2 with sample EKS base AMIs, no AWS account needed.

    python -m app.local [--port 8080]             serve the hook; its EC2 stand-in listens on the next port
    python -m app.local packer-build [--port …]   in that EC2, do what `packer build` does; print the AMI id
    python -m app.local backdate AMI TIME [--port …]
                                                  set the AMI's create-timestamp tag (the hook's expiry
                                                  clock), as if it had been built at TIME

The two helpers stand in for what local mode lacks, Packer and the passage of time, so that the saved
requests in examples/ can be replayed in order (README, "Run it locally"). Local mode refreshes the hook's
AMI index every half second (INDEX_REFRESH_SECONDS, 60 s by default), so what the helpers change is seen
by the next sync.
"""

import argparse
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import uvicorn
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.model.tags import parse_timestamp

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_ec2.type_defs import FilterTypeDef

SAMPLE_AMIS_PATH = Path(__file__).with_name("sample_amis.json")
REGION = "us-west-2"
DEFAULT_PORT = 8080
# The sample catalogue's EKS base AMIs: what the seed's PackerBuilder (and examples/) select.
SAMPLE_FILTERS: "list[FilterTypeDef]" = [
    {"Name": "name", "Values": ["amazon-eks-node-al2023-x86_64-standard-1.30*"]},
    {"Name": "owner-id", "Values": ["602401143452"]},
]
CREATE_TIMESTAMP_TAG = "create-timestamp"
# Syncs that change nothing answer from the hook's index of managed AMIs (docs/performance.md). Refreshed
# this often in local mode (60 s in a cluster), an AMI changed with `backdate` is seen within a tick (1 s).
LOCAL_INDEX_REFRESH_SECONDS = "0.5"
INDEX_SETTLE_SECONDS = 3.0


class LocalModeError(RuntimeError):
    """Local mode cannot start or reach its EC2 stand-in; the message says what to do."""


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start_local_ec2(port: int = 0) -> "ThreadedMotoServer":
    """Start moto on a loopback port (0: any free one) and point this process's AWS settings at it."""
    if port and not port_is_free(port):
        # moto's server thread would die on the bind and leave start() waiting forever.
        raise LocalModeError(f"port {port} for the EC2 stand-in is in use; pick another with --ec2-port")
    # moto reads MOTO_AMIS_PATH when its EC2 module is imported and when backends start, so it is set
    # before moto is imported here.
    os.environ["MOTO_AMIS_PATH"] = str(SAMPLE_AMIS_PATH)
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL_EC2"] = f"http://{host}:{bound}"
    os.environ["AWS_ENDPOINT_URL_SSM"] = f"http://{host}:{bound}"
    # Dummy keys win over any real profile, so nothing done in local mode can reach a real account.
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"  # noqa: S105 - moto's placeholder, not a secret
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return server


def ec2_client(endpoint: str, region: str = REGION) -> "EC2Client":
    """A client for the EC2 stand-in at `endpoint`, whatever the environment says."""
    return boto3.session.Session().client(
        "ec2",
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's placeholder, not a secret
        # Loading moto's catalogue takes a few seconds once; a hook that is not running fails fast.
        config=Config(connect_timeout=2, read_timeout=60, retries={"mode": "standard", "max_attempts": 2}),
    )


def warm_up(endpoint: str, region: str = REGION) -> int:
    """One DescribeImages of the sample AMIs, so moto's EC2 backend and AMI catalogue are loaded (a few
    seconds, once) before the hook takes requests; returns how many sample AMIs it holds."""
    images = ec2_client(endpoint, region).describe_images(Filters=SAMPLE_FILTERS)["Images"]
    return len(images)


def packer_build(endpoint: str, region: str = REGION) -> str:
    """What a Packer amazon-ebs build does in EC2: start an instance from the newest sample base AMI,
    create an AMI from it, terminate the instance. Returns the new AMI's id (EC2 assigns it)."""
    client = ec2_client(endpoint, region)
    bases = client.describe_images(Filters=SAMPLE_FILTERS)["Images"]
    if not bases:
        raise LocalModeError(f"no sample base AMI in the EC2 stand-in at {endpoint}")
    base = max(bases, key=lambda image: image.get("CreationDate", ""))
    instance = client.run_instances(ImageId=base["ImageId"], MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance_id = instance["Instances"][0]["InstanceId"]
    image_id = client.create_image(InstanceId=instance_id, Name=f"packer-local-{instance_id}")["ImageId"]
    client.terminate_instances(InstanceIds=[instance_id])
    return image_id


def backdate(endpoint: str, image_id: str, timestamp: str, region: str = REGION) -> None:
    """Set the AMI's create-timestamp tag, the moment the hook's expiry clock counts from."""
    try:
        parse_timestamp(timestamp)
    except ValueError:
        raise LocalModeError(f"{timestamp!r} is not a UTC timestamp like 2026-11-01T00:26:05Z") from None
    client = ec2_client(endpoint, region)
    client.describe_images(ImageIds=[image_id])  # fails clearly for an unknown AMI
    client.create_tags(Resources=[image_id], Tags=[{"Key": CREATE_TIMESTAMP_TAG, "Value": timestamp}])


def _ec2_endpoint(args: argparse.Namespace) -> str:
    return f"http://127.0.0.1:{args.ec2_port or args.port + 1}"


def _serve(args: argparse.Namespace) -> None:
    # moto's own request log would interleave a line per AWS call with the hook's line per answer.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("INDEX_REFRESH_SECONDS", LOCAL_INDEX_REFRESH_SECONDS)
    # The sample AMIs and examples/ live in REGION, whatever AWS_REGION a developer's shell exports.
    os.environ.setdefault("INDEX_REGIONS", REGION)
    server = start_local_ec2(args.ec2_port or args.port + 1)
    try:
        endpoint = os.environ["AWS_ENDPOINT_URL_EC2"]
        # Before the hook starts: its first sync must not wait for moto to load its EC2 backend and AMI
        # catalogue (seconds, once). The hook's own index fill (INDEX_REGIONS) is then quick too.
        count = warm_up(endpoint)
        print(
            f"EC2 stand-in at {endpoint}: {count} sample base AMIs in {REGION}", file=sys.stderr, flush=True
        )
        uvicorn.run("app.main:app", host="127.0.0.1", port=args.port)
    finally:
        server.stop()


def _helper(args: argparse.Namespace, run: Callable[[str], object]) -> object:
    endpoint = _ec2_endpoint(args)
    try:
        return run(endpoint)
    except (BotoCoreError, ClientError) as error:
        raise LocalModeError(
            f"the EC2 stand-in at {endpoint} said: {error} "
            f"(is `python -m app.local --port {args.port}` running?)"
        ) from None


def _packer_build(args: argparse.Namespace) -> None:
    print(_helper(args, packer_build))


def _backdate(args: argparse.Namespace) -> None:
    _helper(args, lambda endpoint: backdate(endpoint, args.ami, args.timestamp))
    # A sync that changes nothing answers from the hook's index: give it time to see the new tag.
    time.sleep(INDEX_SETTLE_SECONDS)


def _ports(defaults: bool) -> argparse.ArgumentParser:
    """--port and --ec2-port, accepted before or after a helper's name (a helper sets no defaults of its
    own, or it would override a value given before its name)."""
    ports = argparse.ArgumentParser(add_help=False)
    ports.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT if defaults else argparse.SUPPRESS,
        help="HTTP port of the local hook",
    )
    ports.add_argument(
        "--ec2-port",
        type=int,
        default=0 if defaults else argparse.SUPPRESS,
        help="port of its EC2 stand-in (default: the hook's port + 1)",
    )
    return ports


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.local",
        parents=[_ports(defaults=True)],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=_serve)
    commands = parser.add_subparsers(title="helpers for a running local hook", metavar="")
    build = commands.add_parser(
        "packer-build", parents=[_ports(defaults=False)], help="make an AMI as Packer would; print its id"
    )
    build.set_defaults(run=_packer_build)
    back = commands.add_parser(
        "backdate",
        parents=[_ports(defaults=False)],
        help="set an AMI's create-timestamp tag (its expiry clock)",
    )
    back.add_argument("ami", help="the AMI id, ami-…")
    back.add_argument("timestamp", help="when it was built, e.g. 2026-11-01T00:26:05Z")
    back.set_defaults(run=_backdate)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except LocalModeError as error:
        raise SystemExit(f"python -m app.local: {error}") from None


if __name__ == "__main__":
    main()
