"""Fixtures: the session's control plane (`kube`) and a fresh namespace per test (`namespace`).

Without the binaries (scripts/install-kube.sh builds them) the tests that use these fixtures are skipped,
saying so; under CI_REQUIRE_TOOLS=1 they fail instead.
"""

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.cluster import BIN_DIR, BINARIES, ControlPlane, ControlPlaneError
from tests.tools import unavailable


@pytest.fixture(scope="session")
def kube_bin_dir() -> Path:
    """The directory of etcd, kube-apiserver, kube-controller-manager and kubectl."""
    missing = [name for name in BINARIES if not (BIN_DIR / name).is_file()]
    if missing:
        unavailable(
            f"the Kubernetes control plane is not installed (no {', '.join(missing)} in"
            f" {BIN_DIR}; `bash scripts/install-kube.sh` builds it: about 5 minutes the first time)"
        )
    return BIN_DIR


@pytest.fixture(scope="session")
def kube(kube_bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A running control plane for the whole session: `.server`, `.kubeconfig`, `.api`, `.kubectl()`."""
    plane = ControlPlane(tmp_path_factory.mktemp("kube"), kube_bin_dir)
    started = time.monotonic()
    try:
        plane.start()
    except ControlPlaneError as error:
        pytest.fail(f"the Kubernetes control plane did not start: {error}", pytrace=False)
    print(f"kube control plane up in {time.monotonic() - started:.1f} s at {plane.server}")
    try:
        yield plane
    finally:
        plane.stop()


def _namespace_prefix(test_name: str) -> str:
    """`test_foo[bar]` -> `test-foo-bar-`: a DNS label prefix short enough for the server's 5-char suffix."""
    label = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].rstrip("-")
    return f"{label or 'test'}-"


@pytest.fixture
def namespace(kube: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of a fresh namespace, named after the test, whose `default` ServiceAccount exists (so Pods
    can be created in it); deleted afterwards without waiting for it to go."""
    with kube.namespace(_namespace_prefix(request.node.name)) as name:
        yield name
