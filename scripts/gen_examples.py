"""Generate examples/*.json: the hook requests Metacontroller sends at each stage of a builder's life.

    uv run python scripts/gen_examples.py           # write examples/
    uv run python scripts/gen_examples.py --check   # exit 1 when a saved request differs from what this makes

One PackerBuilder (the seed, metacontroller/examples/packerbuilder.yaml, stored with the CRD's defaults as
the API server stores it) lives through six requests, each built from the hook's own answer to the one
before, so nothing in them is typed by hand:

    sync-new.json        created, no Job yet
    sync-running.json    the Job the hook asked for, running
    sync-succeeded.json  that Job succeeded; its Pod's termination message names the AMI it built
    sync-expired.json    two days later: the same Job kept as history, its AMI past `expiresIn`
    sync-failed.json     the rebuild failed
    finalize.json        the PackerBuilder deleted while the retry runs

The answers come from the real service (app.main.create_app, in process) at fixed moments, with an EC2
stand-in that holds app/sample_amis.json and the AMI the build reported. That AMI's id is EXAMPLE_AMI, a
placeholder: EC2 assigns ids itself, so whoever posts sync-succeeded.json or sync-expired.json to a real
EC2 (tests/integration/test_examples.py, the README walkthrough against `python -m app.local`) first
makes the AMI there and puts its id in place of EXAMPLE_AMI. The Jobs and Pods are shaped as the API server
returns them (tests/builders.py): uids, generated labels, owner references, status.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Running `python scripts/gen_examples.py` puts scripts/ first on sys.path, not the project.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

with warnings.catch_warnings():
    # Starlette's notice about httpx, its test client's transport: not about this script.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from app.core.base_image import BaseImageMissing, BaseLookup, BaseSource, FilterSource  # noqa: E402
from app.core.build import PACKER_CONTAINER  # noqa: E402
from app.main import create_app  # noqa: E402
from app.model.settings import Settings  # noqa: E402
from app.model.tags import Image, format_timestamp, parse_timestamp  # noqa: E402
from scripts.generated import write_or_check  # noqa: E402
from tests.builders import NAMESPACE, UID, failed, running, succeeded  # noqa: E402
from tests.deploy.manifests import apply_defaults, crd_schema  # noqa: E402

OUT = ROOT / "examples"
SEED = ROOT / "metacontroller" / "examples" / "packerbuilder.yaml"
CONTROLLER = ROOT / "metacontroller" / "compositecontroller.yaml"
SAMPLE_AMIS = ROOT / "app" / "sample_amis.json"

NAME = "packer-builder-local"
REGION = "us-west-2"
# The AMI the first build reports: a placeholder for the id a real EC2 assigns (see the module docstring).
EXAMPLE_AMI = "ami-0123456789abcdef0"
# The commit git-sync checked out, reported on the termination message's second line.
EXAMPLE_COMMIT = "3f6c1e0a9b7d4c2e8f5a1b3c5d7e9f0a2b4c6d8e"
# What Metacontroller adds to a parent whose CompositeController has a finalize hook.
FINALIZER = "metacontroller.io/compositecontroller-packer-builder"
CONTROLLER_META = {"uid": "0d7d5f0e-2b6c-4bb0-8f3e-7a1c9e4d2f55", "generation": 1}

CREATED = datetime(2026, 11, 1, 0, 0, 0, tzinfo=UTC)
BUILD_MINUTES = 26
# The first build's Job finished here; sync-expired.json is two days and a few seconds later.
FIRST_BUILD_DONE = CREATED + timedelta(seconds=5, minutes=BUILD_MINUTES)
EXPIRED_AT = FIRST_BUILD_DONE + timedelta(hours=48)

STAGES = ("sync-new", "sync-running", "sync-succeeded", "sync-expired", "sync-failed", "finalize")


# --- an EC2 stand-in: the sample catalogue and the AMIs builds made ------------------------------------


class Catalogue:
    """Just enough of app.aws.ec2.ImageSource for the seed's builder: base lookups by filter, tags, reads by id."""

    def __init__(self) -> None:
        self.images: dict[str, Image] = {}
        for raw in json.loads(SAMPLE_AMIS.read_text()):
            self.images[raw["ami_id"]] = Image(
                raw["ami_id"],
                raw["state"],
                parse_timestamp(raw["creation_date"]),
                raw["name"],
                dict(raw.get("tags") or {}),
                raw["architecture"],
            )
        self.owners = {raw["ami_id"]: raw["owner_id"] for raw in json.loads(SAMPLE_AMIS.read_text())}

    def packer_built(self, image_id: str, created: datetime, base: str) -> None:
        """What `packer build` leaves behind: an untagged AMI of the builder's own account."""
        self.images[image_id] = Image(
            image_id, "available", created, f"packer-{NAME}", {}, self.images[base].architecture
        )
        self.owners[image_id] = "self"

    def exact(self) -> Catalogue:
        return self

    def stale(self, region: str) -> str:
        return ""

    def base_image(self, region: str, source: BaseSource) -> BaseLookup:
        if not isinstance(source, FilterSource):
            raise NotImplementedError("the seed selects its base image with filters")
        matches = [image for image in self.images.values() if self._matches(image, source.filters)]
        if not matches:
            return BaseImageMissing(f"no AMI matches {source.describe()}")
        return max(matches, key=lambda image: image.creation_date)

    def _matches(self, image: Image, filters: Sequence[tuple[str, Sequence[str]]]) -> bool:
        fields = {"name": image.name, "owner-id": self.owners[image.image_id], "state": image.state}
        for name, values in filters:
            if name not in fields:
                raise NotImplementedError(f"filter {name}")
            if not any(fnmatch.fnmatchcase(fields[name], value) for value in values):
                return False
        return image.state == "available"

    def managed_images(self, region: str, tags: Mapping[str, str]) -> list[Image]:
        return [i for i in self.images.values() if all(i.tags.get(k) == v for k, v in tags.items())]

    def images_by_id(self, region: str, image_ids: Sequence[str]) -> list[Image]:
        return [self.images[i] for i in image_ids if i in self.images]

    def tag_images(self, region: str, image_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        for image_id in image_ids:
            image = self.images[image_id]
            self.images[image_id] = replace(image, tags={**image.tags, **tags})

    def tag_snapshots(self, region: str, snapshot_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        pass

    def parameter_value(self, region: str, name: str) -> str | None:
        return None

    def parameter_owner(self, region: str, name: str) -> str:
        raise NotImplementedError("the seed publishes no parameter")

    def enable_deprecation(self, region: str, image_id: str, at: datetime) -> None:
        raise NotImplementedError("the seed does not deprecate")

    def images_in_use(self, region: str, image_ids: Sequence[str]) -> dict[str, str]:
        return {}

    def last_launched(self, region: str, image_id: str) -> datetime | None:
        raise NotImplementedError("the seed removes no AMI")

    def untag_images(self, region: str, image_ids: Sequence[str], keys: Sequence[str]) -> None:
        raise NotImplementedError("the seed disables no AMI")

    def disable_image(self, region: str, image_id: str) -> None:
        raise NotImplementedError("the seed disables no AMI")

    def enable_image(self, region: str, image_id: str) -> None:
        raise NotImplementedError("the seed disables no AMI")

    def set_deregistration_protection(self, region: str, image_id: str, enabled: bool) -> None:
        raise NotImplementedError("the seed protects no AMI")

    def deregister_image(self, region: str, image_id: str) -> None:
        raise NotImplementedError("the seed removes no AMI")

    def delete_snapshot(self, region: str, snapshot_id: str) -> None:
        raise NotImplementedError("the seed removes no snapshot")

    def put_parameter(
        self,
        region: str,
        name: str,
        image_id: str,
        *,
        owner: Mapping[str, str] | None = None,
        create: bool = False,
    ) -> None:
        raise NotImplementedError("the seed publishes no parameter")

    def delete_parameter(self, region: str, name: str) -> None:
        raise NotImplementedError("the seed publishes no parameter")


# --- the objects Metacontroller sends ------------------------------------------------------------------


def controller() -> dict[str, Any]:
    """The CompositeController this project ships, as the API server returns it."""
    body = yaml.safe_load(CONTROLLER.read_text())
    body["metadata"] |= CONTROLLER_META
    return dict(body)


def parent(status: dict[str, Any] | None = None, deleted: datetime | None = None) -> dict[str, Any]:
    """The seed's PackerBuilder as stored: the CRD's defaults applied, Metacontroller's finalizer added."""
    seed = yaml.safe_load(SEED.read_text())
    metadata: dict[str, Any] = {
        "name": NAME,
        "namespace": NAMESPACE,
        "uid": UID,
        "generation": 1,
        "creationTimestamp": format_timestamp(CREATED),
        "finalizers": [FINALIZER],
    }
    if deleted is not None:
        metadata |= {"deletionTimestamp": format_timestamp(deleted), "deletionGracePeriodSeconds": 0}
    body: dict[str, Any] = {
        "apiVersion": seed["apiVersion"],
        "kind": seed["kind"],
        "metadata": metadata,
        "spec": apply_defaults(crd_schema()["properties"]["spec"], seed["spec"]),
    }
    if status is not None:
        body["status"] = status
    return body


def _suffix(name: str) -> str:
    """A pod name suffix like the ReplicaSet/Job controllers make, derived from the Job name (stable)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(name.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:5])


def _image_status(container: dict[str, Any]) -> dict[str, str]:
    """The image fields the kubelet reports for a container (a digest derived from the image name)."""
    image = str(container["image"])
    digest = hashlib.sha256(image.encode()).hexdigest()
    repository = image.rsplit(":", 1)[0]
    if "." not in repository.split("/", 1)[0]:
        repository = f"docker.io/{repository if '/' in repository else 'library/' + repository}"
    return {"image": image, "imageID": f"{repository}@sha256:{digest}"}


def pod(job: dict[str, Any], packer_state: dict[str, Any], phase: str, started: datetime) -> dict[str, Any]:
    """The Job's one pod (backoffLimit 0) after git-sync cloned the repo, its Packer container in `packer_state`."""
    meta = job["metadata"]
    name = meta["name"]
    uid = meta["uid"]
    template = job["spec"]["template"]["spec"]
    (git_sync,) = template["initContainers"]
    (packer,) = template["containers"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{_suffix(name)}",
            "namespace": meta["namespace"],
            "uid": f"pod-uid-{name}",
            "creationTimestamp": format_timestamp(started),
            "labels": {
                **job["spec"]["template"]["metadata"]["labels"],
                "batch.kubernetes.io/controller-uid": uid,
                "job-name": name,
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": name,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "status": {
            "phase": phase,
            "startTime": format_timestamp(started),
            "initContainerStatuses": [
                {
                    "name": git_sync["name"],
                    **_image_status(git_sync),
                    "ready": True,
                    "restartCount": 0,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "startedAt": format_timestamp(started),
                            "finishedAt": format_timestamp(started + timedelta(seconds=4)),
                        }
                    },
                }
            ],
            "containerStatuses": [
                {
                    "name": PACKER_CONTAINER,
                    **_image_status(packer),
                    "ready": phase == "Running",
                    "restartCount": 0,
                    "state": packer_state,
                }
            ],
        },
    }


def running_pod(job: dict[str, Any], started: datetime) -> dict[str, Any]:
    state = {"running": {"startedAt": format_timestamp(started + timedelta(seconds=5))}}
    return pod(job, state, "Running", started)


def finished_pod(
    job: dict[str, Any], started: datetime, finished: datetime, exit_code: int, message: str = ""
) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": format_timestamp(started + timedelta(seconds=5)),
        "finishedAt": format_timestamp(finished),
    }
    if message:
        terminated["message"] = message
    return pod(job, {"terminated": terminated}, "Succeeded" if exit_code == 0 else "Failed", started)


def request(
    parent_obj: dict[str, Any],
    jobs: Sequence[dict[str, Any]] = (),
    pods: Sequence[dict[str, Any]] = (),
    finalizing: bool = False,
) -> dict[str, Any]:
    """A hook request (hook version v1: children and related keyed by name)."""
    return {
        "controller": controller(),
        "parent": parent_obj,
        "children": {"Job.batch/v1": {j["metadata"]["name"]: j for j in jobs}},
        "related": {"Pod.v1": {p["metadata"]["name"]: p for p in pods}},
        "finalizing": finalizing,
    }


# --- the life of the builder -----------------------------------------------------------------------------


Post = Callable[[str, dict[str, Any], datetime], dict[str, Any]]


def _hook(ec2: Catalogue) -> tuple[TestClient, Post]:
    """The real service in process, with the EC2 stand-in and a clock the story sets at each post."""
    moment = [CREATED]
    # Explicit settings: nothing from the environment (a Slack token, a prefix) may change the answers.
    settings = Settings(slack_bot_token="", publish_parameter_prefix="", log_level="WARNING")
    app = create_app(settings, images=ec2, clock=lambda: moment[0])
    client = TestClient(app)

    def post(path: str, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        moment[0] = now
        response = client.post(path, json=body)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}: {response.text}")
        answer: dict[str, Any] = response.json()
        return answer

    return client, post


def _new_job(answer: dict[str, Any], known: Sequence[dict[str, Any]]) -> dict[str, Any]:
    names = {j["metadata"]["name"] for j in known}
    (job,) = [c for c in answer["children"] if c["metadata"]["name"] not in names]
    return dict(job)


def requests() -> dict[str, dict[str, Any]]:
    """Every stage's request, in order of the builder's life."""
    ec2 = Catalogue()
    client, post = _hook(ec2)
    with client:
        saved: dict[str, dict[str, Any]] = {}

        new = saved["sync-new"] = request(parent())
        answer = post("/sync", new, CREATED + timedelta(seconds=1))
        desired = _new_job(answer, [])
        first = CREATED + timedelta(seconds=2)
        first_running = running(desired, first)

        saved["sync-running"] = request(
            parent(answer["status"]), [first_running], [running_pod(first_running, first)]
        )
        answer = post("/sync", saved["sync-running"], first + timedelta(minutes=1))

        base = first_running["metadata"]["annotations"]["ami.refresh.ops/base-ami"]
        ec2.packer_built(EXAMPLE_AMI, FIRST_BUILD_DONE - timedelta(minutes=2), base)
        done = succeeded(desired, first, FIRST_BUILD_DONE)
        message = f"{REGION}:{EXAMPLE_AMI}\ncommit={EXAMPLE_COMMIT}"
        done_pod = finished_pod(done, first, FIRST_BUILD_DONE - timedelta(seconds=3), 0, message)
        saved["sync-succeeded"] = request(parent(answer["status"]), [done], [done_pod])
        answer = post("/sync", saved["sync-succeeded"], FIRST_BUILD_DONE + timedelta(seconds=5))

        # Two days on: the Job stays as history (successfulJobsHistoryLimit 1) with its pod, the AMI is
        # tagged with the Job's completion time and has just expired.
        saved["sync-expired"] = request(parent(answer["status"]), [done], [done_pod])
        answer = post("/sync", saved["sync-expired"], EXPIRED_AT + timedelta(seconds=5))
        rebuild = _new_job(answer, [done])

        second = EXPIRED_AT + timedelta(seconds=7)
        broke = second + timedelta(minutes=13)
        rebuild_failed = failed(rebuild, second, broke)
        failed_pod = finished_pod(rebuild_failed, second, broke - timedelta(seconds=2), 1)
        saved["sync-failed"] = request(
            parent(answer["status"]), [done, rebuild_failed], [done_pod, failed_pod]
        )
        # Past the first retry's backoff (1 minute): the retry starts in this answer.
        answer = post("/sync", saved["sync-failed"], broke + timedelta(minutes=1, seconds=5))
        retry = _new_job(answer, [done, rebuild_failed])

        third = broke + timedelta(minutes=1, seconds=7)
        retry_running = running(retry, third)
        deleted = third + timedelta(minutes=4)
        saved["finalize"] = request(
            parent(answer["status"], deleted=deleted),
            [done, rebuild_failed, retry_running],
            [done_pod, failed_pod, running_pod(retry_running, third)],
            finalizing=True,
        )
        post("/finalize", saved["finalize"], deleted + timedelta(seconds=1))
    if list(saved) != list(STAGES):
        raise RuntimeError(f"stages {list(saved)} are not {list(STAGES)}")
    return saved


def render(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if a saved request differs")
    args = parser.parse_args(argv)
    files = {OUT / f"{stage}.json": render(body) for stage, body in requests().items()}
    return write_or_check(
        files,
        ROOT,
        check=args.check,
        source="the hook's answers",
        command="uv run python scripts/gen_examples.py",
    )


if __name__ == "__main__":
    sys.exit(main())
