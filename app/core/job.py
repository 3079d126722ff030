"""The build Job: the Packer command line, the container script that runs it, and the Job manifest.

Layout of the build pod:

- init container (git-sync v4, one-time) clones `spec.builder.repoURL` at `spec.builder.branch` into the
  shared `workspace` emptyDir; the checkout is published as the symlink CHECKOUT.
- container PACKER_CONTAINER runs `packer init`, `validate`, `build` in `CHECKOUT/<spec.builder.dir>` and
  reports the AMI(s) it built through its termination message: `region:ami-id`, comma-joined, and on a
  second line `commit=<sha>` when git-sync's checkout names its commit.

Both containers run as git-sync's own non-root uid with a read-only root filesystem; every path they write
(HOME, Packer's plugin and cache dirs, TMPDIR, the checkout) is an emptyDir.
"""

import re
import shlex
from collections.abc import Sequence
from importlib import resources
from typing import Any

from app.core.build import (
    ANNOTATION_BASE_AMI,
    ANNOTATION_COMMAND,
    ANNOTATION_REPLACES,
    LABEL_ATTEMPT,
    LABEL_BUILD_ID,
    LABEL_GENERATION,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_OWNER_UID,
    LABEL_STEP,
    MANAGED_BY,
    PACKER_CONTAINER,
    STEP_BUILD,
    BuildPlan,
)
from app.model.durations import parse_duration
from app.model.spec import API_GROUP, Command, PackerBuilderSpec, SubCommand

# The PackerBuilder a Job builds for, for people reading Jobs (ownerReferences are Metacontroller's).
ANNOTATION_BUILDER = f"{API_GROUP}/builder"

TERMINATION_LOG = "/dev/termination-log"
WORKSPACE = "/workspace"
GIT_ROOT = f"{WORKSPACE}/git"
GIT_LINK = "repo"
CHECKOUT = f"{GIT_ROOT}/{GIT_LINK}"
GIT_AUTH_DIR = "/etc/git-secret"
SCRATCH = "/tmp"  # noqa: S108 - an emptyDir private to each container, not the node's /tmp

# git-sync v4 images create this uid/gid; ssh insists that the running uid exists in /etc/passwd.
RUN_AS = 65533
# Packer cleans up on SIGTERM (terminates the build instance, deletes the temporary key pair and security
# group); that can take minutes, and a SIGKILL before it ends leaks those resources.
TERMINATION_GRACE_SECONDS = 600

_ORDER = (SubCommand.init, SubCommand.validate, SubCommand.build)
_TERMINATION = re.compile(r"([a-z]{2}(?:-[a-z]+)+-[0-9]+):(ami-[0-9a-f]{8,17})")

_COMMIT = re.compile(r"[0-9a-f]{40}")


def _container_file(name: str) -> str:
    return (resources.files("app.core") / "container" / name).read_text(encoding="utf-8")


# Package data (app/container/): the container script and the awk program it filters Packer's output
# with, real files so that they can be read, linted with shellcheck and syntax-highlighted.
_SCRIPT = _container_file("packer-build.sh")
_AWK_PROGRAM = _container_file("packer-filter.awk")


def _shell_words(words: Sequence[str]) -> str:
    """The one place where values meet the shell: each word is quoted exactly once."""
    return " ".join(shlex.quote(word) for word in words)


def _command_argv(command: Command, facts: Sequence[str]) -> list[str]:
    sub = command.subCommand
    argv = ["packer", sub.value]
    # Only `packer build` knows -color and -on-error; init and validate reject them as undefined flags.
    if sub is SubCommand.build:
        if not command.color:
            argv.append("-color=false")
        if command.onError is not None:
            argv.append(f"-on-error={command.onError.value}")
    for path in [command.variablesFile, *command.variablesFiles]:
        if path:
            argv.append(f"-var-file={path}")
    for name in sorted(command.variables):
        argv += ["-var", f"{name}={command.variables[name]}"]
    argv += command.args
    # Last, so that the base AMI we found and the region we tag in win over any user-supplied -var.
    if sub is not SubCommand.init:
        argv += facts
    argv.append(".")
    return argv


def _packer_argvs(spec: PackerBuilderSpec, base_ami: str | None) -> list[list[str]]:
    """init, validate, build in that order; a subcommand not listed runs in its default form."""
    listed: dict[SubCommand, Command] = {}
    for command in spec.builder.commands:
        listed.setdefault(command.subCommand, command)  # the first entry for a subcommand wins
    # -var rather than PKR_VAR_*: Packer rejects an undeclared -var, so a template that forgot to
    # declare ami_id fails loudly instead of silently building from its own hard-coded AMI. Without a
    # base AMI (none found yet) nothing is passed, so a template that needs one fails in validate.
    facts = []
    if base_ami:
        facts = ["-var", f"ami_id={base_ami}", "-var", f"region={spec.region}"]
    return [_command_argv(listed.get(sub) or Command(subCommand=sub), facts) for sub in _ORDER]


def packer_command(spec: PackerBuilderSpec, base_ami: str | None) -> str:
    """The command line published in status.command, run inside spec.builder.dir of the checkout."""
    return " && ".join(_shell_words(argv) for argv in _packer_argvs(spec, base_ami))


def _function(name: str, argv: Sequence[str]) -> str:
    """A one-line shell function that runs argv."""
    return f"{name}() {{ {_shell_words(argv)}; }}"


def container_script(spec: PackerBuilderSpec, base_ami: str | None) -> str:
    """The POSIX sh script (`sh -c`) of the Packer container: app/container/packer-build.sh after a header.

    The header assigns the pod's paths and the awk program, and defines one shell function per command
    the spec decides (the cd into spec.builder.dir, packer init, validate, build); the script file
    describes it. Values are quoted here, once, so the script file itself holds no value of the spec.
    """
    init, validate, build = _packer_argvs(spec, base_ami)
    build = [*build[:2], "-machine-readable", *build[2:]]
    header = [
        "# Rendered by app/core/job.py: this header, then app/core/container/packer-build.sh.",
        f"default_checkout_dir={_shell_words([CHECKOUT])}",
        f"default_termination_log={_shell_words([TERMINATION_LOG])}",
        f"awk_program={_shell_words([_AWK_PROGRAM])}",
        _function("enter_project", ["cd", "--", f"./{spec.builder.dir}"]),
        _function("packer_init", init),
        _function("packer_validate", validate),
        # exec: run as a background job, the job's pid is Packer's own, so SIGTERM can be forwarded.
        _function("packer_build", ["exec", *build]),
    ]
    return "\n".join([*header, _SCRIPT])


def parse_termination_message(message: str) -> list[tuple[str, str]]:
    """The (region, AMI id) pairs of a build's termination message; [] unless every entry is one.

    Only the first line holds AMIs (`region:ami-id`, comma-joined); later lines are `key=value` facts
    about the build, such as its commit (termination_commit). A one-line message is the older format.
    """
    first_line = message.split("\n", 1)[0]
    entries = [entry for entry in re.split(r"[\s,]+", first_line) if entry]
    pairs: list[tuple[str, str]] = []
    for entry in entries:
        match = _TERMINATION.fullmatch(entry)
        if match is None:
            return []
        pair = (match.group(1), match.group(2))
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def termination_commit(message: str) -> str:
    """The commit a build checked out, from the `commit=<sha>` line after the first; "" if none.

    The first `commit=` line decides: a value that is not 40 lowercase hex digits gives "". The
    container writes the line only next to at least one AMI, when git-sync's checkout names its commit.
    """
    for line in message.split("\n")[1:]:
        key, equals, value = line.strip().partition("=")
        if equals and key == "commit":
            return value if _COMMIT.fullmatch(value) else ""
    return ""


def _env(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _is_ssh(url: str) -> bool:
    return url.startswith("ssh://") or "://" not in url  # scp-like git@host:path


def _resources(cpu: str, memory: str, memory_limit: str) -> dict[str, Any]:
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit}}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }


def _git_sync_container(spec: PackerBuilderSpec) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The init container and the extra volumes it needs."""
    git, repo = spec.gitSync, spec.builder.repoURL
    env = [
        _env("GITSYNC_REPO", repo),
        _env("GITSYNC_REF", spec.builder.branch),
        _env("GITSYNC_ROOT", GIT_ROOT),
        _env("GITSYNC_LINK", GIT_LINK),
        _env("GITSYNC_ONE_TIME", "true"),
        _env("GITSYNC_DEPTH", "1"),
        _env("HOME", SCRATCH),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "workspace", "mountPath": WORKSPACE},
        {"name": "git-sync-tmp", "mountPath": SCRATCH},
    ]
    volumes: list[dict[str, Any]] = []
    if git.secret and repo.startswith("https://"):
        env += [
            _secret_env("GITSYNC_USERNAME", git.secret, "username"),
            _secret_env("GITSYNC_PASSWORD", git.secret, "token"),
        ]
    elif git.secret and _is_ssh(repo):
        # Host keys are always verified: a spoofed git server would run its own code in a pod that holds
        # AWS credentials. `known_hosts` is mounted optional so that a Secret without it makes git-sync
        # fail at once with a clear error, rather than the pod waiting on a failed mount until the Job's
        # deadline. `ssh` is required like any other referenced Secret key.
        env += [
            # v4's name; it holds a colon-separated list of key files.
            _env("GITSYNC_SSH_KEY_FILE", f"{GIT_AUTH_DIR}/ssh"),
            _env("GITSYNC_SSH_KNOWN_HOSTS", "true"),
            _env("GITSYNC_SSH_KNOWN_HOSTS_FILE", f"{GIT_AUTH_DIR}/known_hosts"),
        ]
        mounts.append({"name": "git-secret", "mountPath": GIT_AUTH_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "git-secret",
                "projected": {
                    # ssh refuses a private key that others can read; fsGroup makes it readable to us.
                    "defaultMode": 0o400,
                    "sources": [
                        {"secret": {"name": git.secret, "items": [{"key": "ssh", "path": "ssh"}]}},
                        {
                            "secret": {
                                "name": git.secret,
                                "optional": True,
                                "items": [{"key": "known_hosts", "path": "known_hosts"}],
                            }
                        },
                    ],
                },
            }
        )
    container = {
        "name": git.name,  # the spec keeps it distinct from PACKER_CONTAINER
        "image": git.image,
        "env": env,
        "volumeMounts": mounts,
        "resources": _resources("50m", "64Mi", "512Mi"),
        "securityContext": _container_security(),
        # A failed clone's own error (auth, unknown branch) becomes the reason shown in the pod status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return container, volumes


def _packer_container(spec: PackerBuilderSpec, plan: BuildPlan) -> dict[str, Any]:
    env = [
        _env("AWS_REGION", spec.region),
        _env("AWS_DEFAULT_REGION", spec.region),
        _env("CHECKPOINT_DISABLE", "1"),
        _env("HOME", SCRATCH),
        _env("TMPDIR", SCRATCH),
        _env("PACKER_PLUGIN_PATH", f"{SCRATCH}/packer/plugins"),
        _env("PACKER_CACHE_DIR", f"{SCRATCH}/packer/cache"),
    ]
    # Packer's -debug pauses for a keyboard between steps and would hang the Job; its log is what a
    # person debugging a build wants.
    if any(command.debug for command in spec.builder.commands):
        env.append(_env("PACKER_LOG", "1"))
    # Facts a template may declare as variables; Packer ignores PKR_VAR_* for undeclared ones.
    env += [_env("PKR_VAR_build_id", plan.build_id), _env("PKR_VAR_job_id", plan.job_id)]
    if plan.base_ami:
        env.append(_env("PKR_VAR_base_ami", plan.base_ami))
    env.append(_env("PKR_VAR_region", spec.region))
    container: dict[str, Any] = {
        "name": PACKER_CONTAINER,
        "image": spec.builder.image,
        # The hashicorp/packer image's entrypoint is `packer` itself.
        "command": ["/bin/sh", "-c", container_script(spec, plan.base_ami)],
        "env": env,
    }
    if spec.builder.secret:
        container["envFrom"] = [{"secretRef": {"name": spec.builder.secret}}]
    container |= {
        "volumeMounts": [
            {"name": "workspace", "mountPath": WORKSPACE},
            {"name": "packer-tmp", "mountPath": SCRATCH},
        ],
        "resources": _resources("250m", "512Mi", "2Gi"),
        "securityContext": _container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
    return container


def render_job(
    parent_name: str, namespace: str, uid: str, spec: PackerBuilderSpec, plan: BuildPlan
) -> dict[str, Any]:
    """The batch/v1 Job for one build attempt; deterministic, with no nulls and no empty values."""
    labels = {
        LABEL_OWNER_UID: uid,
        LABEL_BUILD_ID: plan.build_id,
        LABEL_JOB_ID: plan.job_id,
        LABEL_ATTEMPT: str(plan.attempt),
        LABEL_GENERATION: str(plan.generation),
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_STEP: STEP_BUILD,
    }
    annotations = {ANNOTATION_BUILDER: parent_name}
    if plan.base_ami:
        annotations[ANNOTATION_BASE_AMI] = plan.base_ami
    if plan.replaces_ami:
        annotations[ANNOTATION_REPLACES] = plan.replaces_ami
    annotations[ANNOTATION_COMMAND] = packer_command(spec, plan.base_ami)

    git_sync, git_volumes = _git_sync_container(spec)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
        # IRSA and EKS Pod Identity inject their own projected token; nothing here talks to the API server.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if spec.builder.serviceAccountName:
        pod["serviceAccountName"] = spec.builder.serviceAccountName
    pod |= {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [git_sync],
        "containers": [_packer_container(spec, plan)],
        # Size limits bound what a build may write to the node's disk (and keep the maps non-empty).
        "volumes": [
            {"name": "workspace", "emptyDir": {"sizeLimit": "2Gi"}},
            {"name": "git-sync-tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "packer-tmp", "emptyDir": {"sizeLimit": "4Gi"}},
            *git_volumes,
        ],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": plan.job_name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            # A failed build is recorded and retried by the hook under a new name, never by the Job.
            "backoffLimit": 0,
            "activeDeadlineSeconds": int(parse_duration(spec.timeOuts.buildTimeout).total_seconds()),
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod},
        },
    }
