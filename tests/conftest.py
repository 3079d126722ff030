"""Shared fixtures: a real moto server (subprocess) seeded with EKS-like base AMIs, and an AWS env for it."""

import http.server
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.aws import REGION, SAMPLE_AMIS_PATH, free_port

_STARTUP_SECONDS = 30
# The server is on loopback: a proxy from the environment must not get in the way.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str) -> bool:
    try:
        with _DIRECT.open(f"{url}/moto-api/", timeout=1):
            return True
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto server whose every region holds the AMIs of app/sample_amis.json.

    moto reads MOTO_AMIS_PATH when its EC2 backends start (and again after each reset), replacing its
    default AMI catalogue with ours.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log: Path = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env={"MOTO_AMIS_PATH": str(SAMPLE_AMIS_PATH), "PATH": "/usr/bin:/bin"},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + _STARTUP_SECONDS
        while not _answers(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto server did not start:\n{log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def moto_reset(moto_server: str) -> str:
    """The moto server URL, emptied of everything tests created; the seeded AMIs are reloaded."""
    request = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    with _DIRECT.open(request, timeout=5):
        pass
    return moto_server


@pytest.fixture
def ec2_env(monkeypatch: pytest.MonkeyPatch, moto_reset: str) -> str:
    """Point boto3's EC2 at the freshly reset moto server through the environment; yields its URL.

    Only EC2 and SSM are redirected (AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_SSM), the way an operator
    would configure it; local AWS config files and profiles are hidden so a developer's setup cannot leak in.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", moto_reset)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", moto_reset)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    return moto_reset


@pytest.fixture
def slow_endpoint() -> Iterator[str]:
    """An HTTP server that accepts connections and answers long after any sane read timeout."""
    release = threading.Event()

    class Stall(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(30)

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stall)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()


# Every secret value the notification and Secret tests use contains one of these.
_SECRET_MARKS = ("s3cr3t", "xoxb-")


@pytest.fixture(autouse=True)
def _no_secret_in_logs(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """In the notification and Secret tests, no log line (as JSON, extras included) may carry a token."""
    if not request.module.__name__.rsplit(".", 1)[-1].startswith("test_notify"):
        yield
        return
    from app.http.logs import JsonFormatter  # noqa: PLC0415 - only these modules need it

    caplog.set_level("DEBUG")
    yield
    formatter = JsonFormatter()
    records = [*caplog.get_records("setup"), *caplog.get_records("call")]
    lines = "\n".join(formatter.format(record) for record in records)
    leaked = [mark for mark in _SECRET_MARKS if mark in lines]
    assert not leaked, f"a log line carries a secret ({leaked})"
