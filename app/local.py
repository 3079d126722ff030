"""Run the hook on a laptop: an embedded moto EC2 with sample EKS base AMIs, no AWS account needed.

python -m app.local [--port 8080]
"""

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

SAMPLE_AMIS_PATH = Path(__file__).with_name("sample_amis.json")
REGION = "us-west-2"
DEFAULT_PORT = 8080


def start_local_ec2() -> "ThreadedMotoServer":
    """Start moto on a free loopback port and point this process's AWS settings at it."""
    # moto reads MOTO_AMIS_PATH when its EC2 module is imported and when backends start, so it is set
    # before moto is imported here.
    os.environ["MOTO_AMIS_PATH"] = str(SAMPLE_AMIS_PATH)
    from moto.server import ThreadedMotoServer  # noqa: PLC0415

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL_EC2"] = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL_SSM"] = f"http://{host}:{port}"
    # Dummy keys win over any real profile, so nothing done in local mode can reach a real account.
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"  # noqa: S105 - moto's placeholder, not a secret
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m app.local", description=__doc__)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="HTTP port of the hook")
    args = parser.parse_args(argv)
    server = start_local_ec2()
    try:
        uvicorn.run("app.main:app", host="127.0.0.1", port=args.port)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
