"""examples/: the saved request of every stage of a builder's life, and the README walkthrough that posts them.

Each saved request is posted to the service over real HTTP against a real moto EC2, and the answer is the
one the README documents. EC2 assigns AMI ids itself, so the two stages whose answer depends on an AMI in
EC2 (the Job succeeded; the AMI expired) first make that AMI with the same helpers the README uses
(`python -m app.local packer-build` and `backdate`), then put its id in place of the placeholder, exactly
as the README's `sed` does. The README's walkthrough itself runs too, verbatim, against local mode started
with the README's own command.
"""

import copy
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.aws.ec2 import Ec2
from app.core.build import ANNOTATION_REPLACES
from app.core.children import as_desired
from app.local import backdate, packer_build, port_is_free
from app.main import create_app
from app.model.hooks import HookRequest
from app.model.settings import Settings
from app.model.tags import format_timestamp
from scripts import gen_examples
from tests.aws import NEWEST_EKS_130_X86, REGION, ec2_client, free_port, tags_of
from tests.deploy.manifests import apply_defaults, crd_schema, schema_errors, strict, validation_errors
from tests.http import post, serve
from tests.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
README = ROOT / "README.md"


STAGES: tuple[str, ...] = gen_examples.STAGES
PLACEHOLDER: str = gen_examples.EXAMPLE_AMI
FIRST_JOB = "packer-builder-local-69170d12"


def saved(stage: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EXAMPLES / f"{stage}.json").read_text())
    return body


def jobs(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["children"]["Job.batch/v1"].values())


def with_ami(body: dict[str, Any], image_id: str) -> dict[str, Any]:
    """The README's `sed "s/<placeholder>/$AMI/g"`."""
    replaced: dict[str, Any] = json.loads(json.dumps(body).replace(PLACEHOLDER, image_id))
    return replaced


def finished_now(body: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The README's `jq '.children[][].status.completionTime = (now | todate)'`."""
    body = copy.deepcopy(body)
    for job in jobs(body):
        job["status"]["completionTime"] = format_timestamp(now)
    return body


def names(answer: dict[str, Any]) -> list[str]:
    return [str(child["metadata"]["name"]) for child in answer["children"]]


def condition(answer: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [c for c in answer["status"]["conditions"] if c["type"] == kind]
    return dict(found)


# --- the saved requests are what Metacontroller would send ----------------------------------------------


def test_saved_requests_are_what_the_generator_makes_from_the_hooks_answers() -> None:
    made = gen_examples.requests()
    assert sorted(made) == sorted(path.stem for path in EXAMPLES.glob("*.json"))
    for stage, body in made.items():
        assert (EXAMPLES / f"{stage}.json").read_text() == gen_examples.render(body), (
            f"examples/{stage}.json is stale: run `uv run python scripts/gen_examples.py`"
        )


@pytest.mark.parametrize("stage", STAGES)
def test_saved_parent_is_the_seed_as_the_api_server_stores_it(stage: str) -> None:
    seed = yaml.safe_load((ROOT / "metacontroller" / "examples" / "packerbuilder.yaml").read_text())
    body = saved(stage)
    parent = body["parent"]
    assert parent["spec"] == apply_defaults(crd_schema()["properties"]["spec"], seed["spec"])
    # The status too: it is the hook's own answer to the stage before.
    assert schema_errors(strict(crd_schema()), parent) == []
    assert parent["metadata"]["finalizers"] == ["metacontroller.io/compositecontroller-packer-builder"]
    controller = yaml.safe_load((ROOT / "metacontroller" / "compositecontroller.yaml").read_text())
    assert body["controller"]["spec"] == controller["spec"]
    request = HookRequest.model_validate(body)
    assert request.finalizing is (stage == "finalize")


@pytest.mark.parametrize("stage", STAGES)
def test_saved_jobs_and_pods_are_valid_kubernetes_objects(stage: str) -> None:
    body = saved(stage)
    for group in (*body["children"].values(), *body["related"].values()):
        for name, obj in group.items():
            assert obj["metadata"]["name"] == name
            assert validation_errors(obj) == [], name


def test_each_stage_carries_the_jobs_the_answer_before_asked_for() -> None:
    """A chain: what one stage's answer wants is what the next stage's request shows (with placeholders)."""
    running = jobs(saved("sync-running"))
    assert [j["status"] for j in running] == [{"active": 1, "startTime": "2026-11-01T00:00:02Z", "ready": 1}]
    (succeeded,) = jobs(saved("sync-succeeded"))
    assert as_desired(succeeded) == as_desired(running[0])
    (pod,) = saved("sync-succeeded")["related"]["Pod.v1"].values()
    message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert message.splitlines()[0] == f"{REGION}:{PLACEHOLDER}"
    expired = saved("sync-expired")
    assert jobs(expired) == [succeeded]
    # README step 4 sets the AMI's create-timestamp to the Job's completion: the saved request's own.
    assert f'backdate "$AMI" {succeeded["status"]["completionTime"]}' in README.read_text()
    failed = [j["metadata"]["name"] for j in jobs(saved("sync-failed"))]
    assert failed[0] == FIRST_JOB
    assert [j["metadata"]["name"] for j in jobs(saved("finalize"))][:2] == failed


# --- each saved request posted to the service, against moto ------------------------------------------------


@pytest.fixture
def hook(ec2_env: str) -> Iterator[str]:
    with serve(create_app(Settings(), images=Ec2())) as url:
        yield url


def answer_to(url: str, body: dict[str, Any]) -> dict[str, Any]:
    code, answer = post(url, body)
    assert code == 200, answer
    return dict(answer)


def test_new_builder_gets_one_build_job(hook: str) -> None:
    answer = answer_to(f"{hook}/sync", saved("sync-new"))
    assert answer["status"]["state"] == "JobCreation"
    assert names(answer) == [FIRST_JOB]
    assert answer["status"]["lastRunBaseImageID"] == NEWEST_EKS_130_X86
    # Exactly the Job the next stage shows running.
    assert answer["children"] == [as_desired(jobs(saved("sync-running"))[0])]
    assert condition(answer, "Ready")["reason"] == "NoActiveAMI"


def test_running_job_is_returned_unchanged(hook: str) -> None:
    request = saved("sync-running")
    answer = answer_to(f"{hook}/sync", request)
    assert answer["status"]["state"] == "JobRunning"
    assert answer["status"]["jobStatus"] == "running"
    assert answer["children"] == [as_desired(jobs(request)[0])]


def test_succeeded_job_gets_its_ami_tagged_active(hook: str, ec2_env: str) -> None:
    image_id = packer_build(ec2_env)
    now = datetime.now(UTC).replace(microsecond=0)
    answer = answer_to(f"{hook}/sync", finished_now(with_ami(saved("sync-succeeded"), image_id), now))
    assert answer["status"]["state"] == "AMICreated"
    assert answer["status"]["lastRunBuiltImageID"] == image_id
    assert condition(answer, "Ready")["status"] == "True"
    assert condition(answer, "Ready")["reason"] == "AMIAvailable"
    assert names(answer) == [FIRST_JOB]  # kept as history: successfulJobsHistoryLimit 1
    tags = tags_of(ec2_client(ec2_env), image_id)
    assert tags["status"] == "active"
    assert tags["create-timestamp"] == format_timestamp(now)
    assert tags["packer-repo-commit"] == gen_examples.EXAMPLE_COMMIT


def test_expired_ami_is_rebuilt(hook: str, ec2_env: str) -> None:
    """README steps 3 and 4: the AMI tagged by the success, two days on, is replaced by a new build."""
    image_id = packer_build(ec2_env)
    answer_to(f"{hook}/sync", finished_now(with_ami(saved("sync-succeeded"), image_id), datetime.now(UTC)))
    request = with_ami(saved("sync-expired"), image_id)
    (done,) = jobs(request)
    backdate(ec2_env, image_id, done["status"]["completionTime"])

    answer = answer_to(f"{hook}/sync", request)
    assert answer["status"]["state"] == "JobCreation"
    ready = condition(answer, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "AMIExpired")
    assert image_id in ready["message"]
    assert len(answer["children"]) == 2
    (kept,) = [c for c in answer["children"] if c["metadata"]["name"] == FIRST_JOB]
    (rebuild,) = [c for c in answer["children"] if c["metadata"]["name"] != FIRST_JOB]
    assert kept == as_desired(done)
    assert rebuild["metadata"]["annotations"][ANNOTATION_REPLACES] == image_id
    assert tags_of(ec2_client(ec2_env), image_id)["status"] == "active"


def test_failed_build_is_counted_kept_and_retried(hook: str) -> None:
    answer = answer_to(f"{hook}/sync", saved("sync-failed"))
    assert answer["status"]["state"] == "JobCreation"
    assert answer["status"]["failedJobCount"] == 1
    assert names(answer) == [j["metadata"]["name"] for j in jobs(saved("finalize"))]
    retry = answer["children"][-1]["metadata"]["name"]
    assert answer["status"]["lastRunMessage"] == f"Build {retry} started (attempt 2 of 3)"


def test_finalize_waits_for_the_running_build(hook: str) -> None:
    request = saved("finalize")
    answer = answer_to(f"{hook}/finalize", request)
    running = jobs(request)[-1]
    assert answer["finalized"] is False
    assert answer["status"]["state"] == "Finalizing"
    assert answer["children"] == [as_desired(running)]
    assert answer["status"]["lastRunMessage"] == (
        f"Waiting for running build {running['metadata']['name']} to finish"
    )


# --- local mode, started with the README's command, and the README walkthrough against it -------------


def _readme_block(containing: str) -> str:
    """The README's ```bash block under "Run it locally" that contains `containing`."""
    section = README.read_text().split("## Run it locally", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    (block,) = [b for b in blocks if containing in b]
    return str(block)


def readme_run_command() -> list[str]:
    """The README's local-run command, without its `pip install uv &&` preamble."""
    (line,) = [ln for ln in _readme_block("pip install uv").splitlines() if "app.local" in ln]
    return line.split("&&")[-1].split()


def test_readme_runs_local_mode_without_the_dev_tools() -> None:
    command = readme_run_command()
    assert command[:2] == ["uv", "run"]
    assert "--no-dev" in command
    assert "--locked" in command
    assert command[command.index("--extra") + 1] == "local"
    assert command[-5:] == ["python", "-m", "app.local", "--port", "8080"]
    # The extra it names holds what local mode imports beyond the service's own dependencies.
    project = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^local = \["moto\[server\]', project, re.MULTILINE)


@dataclass(frozen=True)
class Local:
    url: str
    port: int


def _free_pair() -> int:
    """A port whose next one is free too (local mode puts its EC2 stand-in there)."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise RuntimeError("no two free consecutive ports")


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
READY_DEADLINE_SECONDS = 90


def _ready(url: str) -> bool:
    try:
        with _DIRECT.open(f"{url}/readyz", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def local_mode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    """`python -m app.local`, started exactly as the README says (on a free port), until /readyz says 200."""
    require_tool("uv", "the README starts local mode with `uv run`")
    port = _free_pair()
    command = readme_run_command()
    command[-1] = str(port)
    log = tmp_path_factory.mktemp("local") / "local.log"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    for name in [n for n in env if n.startswith("AWS_")]:
        del env[name]
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_DEADLINE_SECONDS
        while not _ready(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"local mode did not get ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        yield Local(url, port)
    finally:
        # uv and the Python it started share the session started for them.
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_local_mode_answers_the_first_sync_at_once(local_mode: Local) -> None:
    """Item: local mode warms its EC2 stand-in before it is ready. No bound is asserted (CI machines are
    busy); the time is printed (`pytest -s`)."""
    started = time.monotonic()
    code, answer = post(f"{local_mode.url}/sync", saved("sync-new"))
    elapsed = time.monotonic() - started
    print(f"\nfirst sync after /readyz: {elapsed * 1000:.0f} ms")
    assert code == 200, answer
    assert names(answer) == [FIRST_JOB]


_EXPECTED = re.compile(r"^# ([\[{].*)$")


def test_readme_walkthrough_prints_what_the_readme_shows(local_mode: Local) -> None:
    """The walkthrough block, run by bash as a reader would (on the test's port); each output line matches
    the comment under its command, `…` standing for what differs from run to run."""
    for tool in ("jq", "curl", "sed"):
        require_tool(tool, "the README walkthrough pipes the hook's answers through it")
    require_tool("uv", "the README walkthrough runs the local helpers with `uv run`")
    block = _readme_block("examples/sync-new.json")
    expected = [m.group(1) for line in block.splitlines() if (m := _EXPECTED.match(line))]
    assert len(expected) == 6
    script = block.replace("localhost:8080", f"127.0.0.1:{local_mode.port}")
    script = re.sub(
        r"(python -m app\.local (?:packer-build|backdate))\b", rf"\1 --port {local_mode.port}", script
    )
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "NO_PROXY": "*", "no_proxy": "*"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.splitlines()
    assert len(printed) == len(expected), done.stdout
    for line, shown in zip(printed, expected, strict=True):
        pattern = re.escape(shown).replace("…", '[^"]*')
        assert re.fullmatch(pattern, line), f"README shows {shown}, the hook printed {line}"
