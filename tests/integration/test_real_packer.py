"""The Job's Packer container script with the real `packer` and Amazon plugin, against moto.

The binaries come from scripts/install-packer.sh (built from the Go module proxy, cached in .tools/). The
checkout is a real git repository laid out the way git-sync v4 lays it out, holding tests/packer's
template, so the script's commit detection, its log filter and its signal handling meet real Packer.
"""

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.core.job import container_script, parse_termination_message, termination_commit
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client
from tests.builders import make_spec

ROOT = Path(__file__).resolve().parents[2]
PACKER = ROOT / ".tools" / "packer" / "v1.11.2" / "packer"
PLUGINS = ROOT / ".tools" / "packer" / "plugins-home"
TEMPLATE = ROOT / "tests" / "packer" / "moto.pkr.hcl"
PROJECT_DIR = "images/moto"
# Generous: a first build against a cold moto takes ~2 s, but CI shares two cores with other work.
BUILD_TIMEOUT = 180


@pytest.fixture(scope="module")
def packer_bin() -> Path:
    if not PACKER.exists() or not PLUGINS.exists():
        pytest.fail("real Packer is not installed: run scripts/install-packer.sh (scripts/test.sh does)")
    return PACKER.parent


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com"}
    env |= {"GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@dataclass
class Checkout:
    link: Path
    commit: str


@pytest.fixture
def checkout(tmp_path: Path) -> Checkout:
    """git-sync v4's layout: <root>/.worktrees/<sha> (a worktree per commit) and <root>/repo linking to it."""
    origin = tmp_path / "origin"
    (origin / PROJECT_DIR).mkdir(parents=True)
    shutil.copy(TEMPLATE, origin / PROJECT_DIR / "moto.pkr.hcl")
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", ".")
    git(origin, "commit", "-q", "-m", "images")
    sha = git(origin, "rev-parse", "HEAD")
    root = tmp_path / "workspace" / "git"
    root.mkdir(parents=True)
    git(origin, "worktree", "add", "-q", "--detach", str(root / ".worktrees" / sha), sha)
    (root / "repo").symlink_to(Path(".worktrees") / sha)
    return Checkout(root / "repo", sha)


@dataclass
class Build:
    process: subprocess.Popen[str]
    lines: list[str]
    termination: Path
    seen: dict[str, threading.Event]

    def wait_for_line(self, text: str, timeout: float = BUILD_TIMEOUT) -> None:
        if not self.seen.setdefault(text, threading.Event()).wait(timeout):
            raise AssertionError(f"never printed {text!r}; output so far:\n" + "\n".join(self.lines))

    def finish(self) -> int:
        try:
            return self.process.wait(BUILD_TIMEOUT)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)

    def message(self) -> str:
        return self.termination.read_text() if self.termination.exists() else ""


@pytest.fixture
def start(packer_bin: Path, checkout: Checkout, ec2_env: str, tmp_path: Path) -> Iterator[Any]:
    builds: list[Build] = []

    def run(**variables: str) -> Build:
        spec = make_spec(
            builder={
                "dir": PROJECT_DIR,
                "commands": [
                    {"subCommand": "validate", "variables": {"endpoint": ec2_env, **variables}},
                    {"subCommand": "build", "variables": {"endpoint": ec2_env, **variables}},
                ],
            }
        )
        scratch = tmp_path / "tmp"
        scratch.mkdir(exist_ok=True)
        termination = tmp_path / "termination-log"
        env = {
            "PATH": f"{packer_bin}:{os.environ['PATH']}",
            "HOME": str(scratch),
            "TMPDIR": str(scratch),
            "CHECKOUT_DIR": str(checkout.link),
            "TERMINATION_LOG": str(termination),
            "PACKER_PLUGIN_PATH": str(PLUGINS),
            "CHECKPOINT_DISABLE": "1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        process = subprocess.Popen(
            ["/bin/sh", "-c", container_script(spec, NEWEST_EKS_130_X86)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # the whole tree can be killed if a test fails midway
        )
        build = Build(process, [], termination, {})

        def read() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                build.lines.append(line.rstrip("\n"))
                for text, event in list(build.seen.items()):
                    if text in line:
                        event.set()

        threading.Thread(target=read, daemon=True).start()
        builds.append(build)
        return build

    yield run
    for build in builds:
        if build.process.poll() is None:
            os.killpg(build.process.pid, signal.SIGKILL)


def instance_states(ec2_env: str) -> list[str]:
    reservations = ec2_client(ec2_env).describe_instances()["Reservations"]
    return [i["State"]["Name"] for r in reservations for i in r["Instances"]]


def test_a_real_build_reports_its_ami_and_commit(start: Any, checkout: Checkout, ec2_env: str) -> None:
    build = start()
    assert build.finish() == 0, "\n".join(build.lines)

    message = build.message()
    ((region, image_id),) = parse_termination_message(message)
    assert region == REGION
    assert message.splitlines()[1] == f"commit={checkout.commit}"
    assert termination_commit(message) == checkout.commit
    (image,) = ec2_client(ec2_env).describe_images(ImageIds=[image_id])["Images"]
    assert image["State"] == "available"
    assert instance_states(ec2_env) == ["terminated"]
    # The log is Packer's readable output, not its machine-readable lines.
    assert any("provisioner done" in line for line in build.lines)
    assert not any(",ui," in line for line in build.lines)


def test_a_failing_build_reports_nothing(start: Any, ec2_env: str) -> None:
    build = start(fail="true")
    assert build.finish() != 0
    assert build.message() == ""
    assert any("failing on purpose" in line for line in build.lines)
    assert instance_states(ec2_env) == ["terminated"]


def test_sigterm_mid_build_lets_packer_clean_up(start: Any, ec2_env: str) -> None:
    build = start(sleep_seconds="120")
    build.wait_for_line("sleeping 120s")
    assert instance_states(ec2_env) == ["running"]

    os.kill(build.process.pid, signal.SIGTERM)  # the kubelet signals PID 1: the shell

    assert build.finish() != 0
    assert build.message() == ""
    assert instance_states(ec2_env) == ["terminated"], "\n".join(build.lines)
    assert any("Cleanly cancelled builds after being interrupted" in line for line in build.lines)
