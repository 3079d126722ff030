"""Just enough of Docker to test the image without an engine: parse the Dockerfile, apply .dockerignore.

The deploy tests replay the Dockerfile's own instructions (WORKDIR, ENV, COPY, the `uv sync` RUN and the
ENTRYPOINT) on this machine, with the image's filesystem mapped under a temporary directory, so the
Dockerfile stays the single place that says how the service is built and started.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.manifests import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    flags: tuple[str, ...]
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, None for shell form."""
        text = self.args.strip()
        if not text.startswith("["):
            return None
        parsed = json.loads(text)
        assert isinstance(parsed, list)
        return [str(item) for item in parsed]

    def words(self) -> list[str]:
        return shlex.split(self.args)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments dropped, `--flags` split off."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        flags: list[str] = []
        rest = rest.strip()
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
            rest = rest.strip()
        if keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(base=words[0], name=name))
            continue
        assert stages, f"{keyword} before FROM"
        stages[-1].instructions.append(Instruction(keyword, tuple(flags), rest))
    return stages


def env_assignments(instruction: Instruction) -> list[tuple[str, str]]:
    return [(word.partition("=")[0], word.partition("=")[2]) for word in instruction.words()]


# --- .dockerignore -------------------------------------------------------------------------------


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def ignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = line.lstrip("!").strip().strip("/")
        patterns.append((negated, _glob_to_regex(os.path.normpath(cleaned))))
    return patterns


def is_ignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent folders) decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, regex in patterns:
        if any(regex.match(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def build_context(destination: Path) -> list[str]:
    """Copy what `docker build .` would send (files a fresh clone has, minus .dockerignore)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    patterns = ignore_patterns()
    sent = sorted(
        path
        for path in listed.split("\0")
        if path and (ROOT / path).is_file() and not is_ignored(path, patterns)
    )
    for path in sent:
        target = destination / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / path, target)
    return sent


# --- replaying the build -------------------------------------------------------------------------


@dataclass
class Replay:
    """An image filesystem under `root`, built by replaying a Dockerfile's instructions."""

    root: Path
    context: Path
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"

    def host(self, image_path: str) -> Path:
        return self.root / image_path.lstrip("/")

    def resolve(self, path: str) -> str:
        return path if path.startswith("/") else os.path.normpath(os.path.join(self.workdir, path))

    def expand(self, value: str) -> str:
        def lookup(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return self.env.get(name, os.environ.get(name, ""))

        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lookup, value)

    def process_env(self) -> dict[str, str]:
        """The image's ENV as the host sees it: absolute paths that exist in the image are mapped."""

        def mapped(value: str) -> str:
            if value.startswith("/") and ":" not in value:
                return str(self.host(value))
            # A search path such as PATH: image folders are mapped, the host's own stay usable.
            parts = value.split(":")
            return ":".join(
                str(self.host(part)) if part.startswith("/") and self.host(part).exists() else part
                for part in parts
            )

        return {**os.environ, **{name: mapped(value) for name, value in self.env.items()}}

    def apply(self, stage: Stage, run: "RunHandler") -> None:
        # Each stage starts from its base image: ENV and WORKDIR do not carry over, files only by COPY.
        self.env = {}
        self.workdir = "/"
        for instruction in stage.instructions:
            keyword = instruction.keyword
            if keyword == "WORKDIR":
                self.workdir = self.resolve(instruction.args)
                self.host(self.workdir).mkdir(parents=True, exist_ok=True)
            elif keyword == "ENV":
                for name, value in env_assignments(instruction):
                    self.env[name] = self.expand(value)
            elif keyword == "COPY":
                self._copy(instruction)
            elif keyword == "RUN":
                run(self, instruction)

    def _copy(self, instruction: Instruction) -> None:
        *sources, destination = instruction.words()
        from_stage = next((f.split("=", 1)[1] for f in instruction.flags if f.startswith("--from=")), None)
        target = self.host(self.resolve(destination))
        for source in sources:
            if from_stage is None:
                origin = self.context / source
            else:
                # One filesystem for all stages: the build stage's output is already in place.
                origin = self.host(source)
                if origin == target or not origin.exists():
                    continue
            into = target / origin.name if destination.endswith("/") else target
            if origin.is_dir():
                shutil.copytree(origin, into, dirs_exist_ok=True)
            else:
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, into)


RunHandler = Callable[[Replay, Instruction], None]
