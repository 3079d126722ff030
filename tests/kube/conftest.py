"""Fixtures: the session's control plane (`kube`), a fresh namespace per test (`namespace`), and the real
Metacontroller running against that control plane (`metacontroller`).

Without the binaries (scripts/install-kube.sh and scripts/install-metacontroller.sh build them) the tests
that use these fixtures are skipped, saying so; under CI_REQUIRE_TOOLS=1 they fail instead. A failed test
that used Metacontroller gets what Metacontroller logged during it as a report section.
"""

import re
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.kube import real_metacontroller
from tests.kube.cluster import BIN_DIR, BINARIES, ControlPlane, ControlPlaneError, Process
from tests.tools import unavailable

# What of Metacontroller's log goes into a failed test's report (its end: the log is verbose at level 4).
_REPORTED_LOG_CHARS = 30_000
_METACONTROLLER = pytest.StashKey[Process]()
_LOG_OFFSET = pytest.StashKey[int]()


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


@pytest.fixture(scope="session")
def metacontroller(kube: ControlPlane, pytestconfig: pytest.Config) -> Iterator[Process]:
    """Metacontroller v4.17.2 running against the session's control plane, with its CRDs and the
    PackerBuilder CRD installed (tests/kube/real_metacontroller.py); no CompositeController yet."""
    if not real_metacontroller.BINARY.is_file() or not real_metacontroller.CRDS_FILE.is_file():
        unavailable(
            f"Metacontroller {real_metacontroller.VERSION} is not installed (no"
            f" {real_metacontroller.BINARY} or {real_metacontroller.CRDS_FILE.name};"
            " `bash scripts/install-metacontroller.sh` builds it: about 3 minutes the first time)"
        )
    started = time.monotonic()
    try:
        process = real_metacontroller.start(kube)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)
    print(f"Metacontroller up in {time.monotonic() - started:.1f} s")
    pytestconfig.stash[_METACONTROLLER] = process
    try:
        yield process
    finally:
        process.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    process = item.config.stash.get(_METACONTROLLER, None)
    item.stash[_LOG_OFFSET] = process.size() if process is not None else 0
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    process = item.config.stash.get(_METACONTROLLER, None)
    if report.failed and process is not None and "metacontroller" in getattr(item, "fixturenames", ()):
        since = item.stash.get(_LOG_OFFSET, 0)
        report.sections.append(
            (
                f"Metacontroller log during this test ({report.when}; {process.log})",
                process.tail(_REPORTED_LOG_CHARS, since),
            )
        )
    return report
