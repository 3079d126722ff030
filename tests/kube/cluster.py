"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

The binaries come from scripts/install-kube.sh (built from the Go module proxy into .tools/). Everything a
session starts lives in one temporary directory: the PKI (a CA, the API server's serving certificate for
127.0.0.1 and localhost, an admin client certificate in `system:masters`, the service-account key pair),
etcd's data, a kubeconfig, and one log file per process. No scheduler and no kubelet: Pods are created (by
the Job controller, say) but stay Pending.

`ControlPlane.start()` waits by what it can observe, each step with a bounded deadline: etcd's /health, the
API server's /readyz, then the `default` ServiceAccount of the `default` namespace (the controller-manager's
serviceaccount controller made it). A failure names the step and carries the tail of every process log; the
processes started so far are stopped whatever happens.
"""

import contextlib
import ctypes
import datetime
import ipaddress
import json
import math
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.aws import free_port

KUBE_VERSION = "v1.31.0"
ETCD_VERSION = "v3.5.21"
ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = ROOT / ".tools" / f"kube-{KUBE_VERSION}-etcd-{ETCD_VERSION}" / "bin"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")

SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Generous for a busy two-core machine: the API server is ready in about 10 s on an idle one.
STARTUP_SECONDS = 120.0
STOP_SECONDS = 10.0
NAMESPACE_READY_SECONDS = 60.0
_LOG_TAIL_CHARS = 4000

JsonObject: TypeAlias = dict[str, Any]

_PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


class KubeApiError(Exception):
    """An error answer of the API server: its HTTP code, and the reason and message of its Status."""

    def __init__(self, method: str, path: str, code: int, reason: str, message: str, status: JsonObject):
        super().__init__(f"{method} {path}: {code} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status


class ControlPlaneError(RuntimeError):
    """The control plane did not come up; the message says which step failed and carries the logs."""


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its arguments and stderr."""


class KubeClient:
    """A small JSON client for the API server, authenticated by a client certificate.

    Paths are the API's own (`/api/v1/namespaces/x/configmaps`). Errors raise KubeApiError with the server's
    Status. Proxies from the environment are ignored: the server is on loopback.
    """

    def __init__(self, server: str, *, ca: Path, cert: Path, key: Path, timeout: float = 30.0):
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        self.server = server
        self._http = httpx.Client(
            base_url=server,
            verify=context,
            trust_env=False,
            timeout=timeout,
            headers={"Accept": "application/json"},
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> httpx.Response:
        """The raw answer, whatever its status (for /readyz, /healthz and the like)."""
        content = None if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": content_type}
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        return self._http.request(method, path, params=params, content=content, headers=headers, **extra)

    def _json(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        response = self.request(method, path, params=params, body=body, content_type=content_type)
        _raise_for_status(method, path, response)
        answer: JsonObject = response.json()
        return answer

    def get(self, path: str, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return self._json("GET", path, params=params)

    def post(self, path: str, body: JsonObject, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return self._json("POST", path, params=params, body=body)

    def put(self, path: str, body: JsonObject, *, params: Mapping[str, str] | None = None) -> JsonObject:
        return self._json("PUT", path, params=params, body=body)

    def patch(
        self,
        path: str,
        body: JsonObject | list[JsonObject],
        *,
        patch_type: str = "merge",
        params: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """`patch_type`: merge (RFC 7386, the default), strategic, json (RFC 6902) or apply (server-side
        apply: pass params={"fieldManager": ...})."""
        return self._json("PATCH", path, params=params, body=body, content_type=_PATCH_TYPES[patch_type])

    def delete(
        self,
        path: str,
        *,
        propagation_policy: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> JsonObject:
        """The deleted object (or a Status); `propagation_policy`: Foreground, Background or Orphan."""
        body = None if propagation_policy is None else {"propagationPolicy": propagation_policy}
        return self._json("DELETE", path, params=params, body=body)

    @contextlib.contextmanager
    def watch(
        self, collection: str, version: str, *, timeout: float, params: Mapping[str, str] | None = None
    ) -> Iterator[Iterator[JsonObject]]:
        """The events of `collection` after `version`, for at most `timeout` s (the server then ends it)."""
        query = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(max(1, math.ceil(timeout))),
        }
        with self._http.stream("GET", collection, params=query, timeout=timeout + 10) as response:
            if response.is_error:
                response.read()
                _raise_for_status("GET", f"{collection} (watch)", response)
            yield (json.loads(line) for line in response.iter_lines() if line)

    def wait_for(
        self,
        collection: str,
        predicate: Callable[[JsonObject], bool],
        *,
        timeout: float,
        params: Mapping[str, str] | None = None,
        what: str = "",
    ) -> JsonObject:
        """The first object of `collection` (narrowed by `params`: labelSelector, fieldSelector) for which
        `predicate` holds: listed, then watched from the list's resourceVersion until the deadline.

        Raises TimeoutError naming `what` (default: the collection) and the last object seen.
        """
        deadline = time.monotonic() + timeout
        last: JsonObject | None = None
        while True:
            listed = self.get(collection, params=params)
            items: list[JsonObject] = listed.get("items") or []
            for item in items:
                last = item
                if predicate(item):
                    return item
            version = listed["metadata"]["resourceVersion"]
            relist = False
            while not relist and (remaining := deadline - time.monotonic()) > 0:
                with self.watch(collection, version, timeout=remaining, params=params) as events:
                    for event in events:
                        if event["type"] == "ERROR":  # e.g. 410 Gone: the version is too old to watch from
                            relist = True
                            break
                        version = event["object"]["metadata"]["resourceVersion"]
                        if event["type"] in ("ADDED", "MODIFIED"):
                            last = event["object"]
                            if predicate(event["object"]):
                                return last
            if not relist:
                seen = json.dumps(last)[:_LOG_TAIL_CHARS] if last is not None else "no object"
                raise TimeoutError(f"{what or collection} not seen within {timeout:.0f} s; last seen: {seen}")


def _raise_for_status(method: str, path: str, response: httpx.Response) -> None:
    if not response.is_error:
        return
    status: JsonObject = {}
    with contextlib.suppress(ValueError):
        parsed = response.json()
        status = parsed if isinstance(parsed, dict) else {}
    if status.get("kind") == "Status":
        raise KubeApiError(
            method,
            path,
            int(status.get("code") or response.status_code),
            str(status.get("reason", "")),
            str(status.get("message", "")),
            status,
        )
    raise KubeApiError(
        method, path, response.status_code, response.reason_phrase, response.text[:2000], status
    )


# -- PKI ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """File paths of the session's certificates and keys (PEM)."""

    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_public_key: Path


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    path.chmod(0o600)
    return key


def _certificate(
    path: Path,
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    *,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    usage: x509.ObjectIdentifier | None = None,
    names: Sequence[x509.GeneralName] = (),
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_cert, issuer_key = issuer if issuer is not None else (None, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=issuer is not None,
                key_cert_sign=issuer is None,
                crl_sign=issuer is None,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def make_pki(directory: Path) -> Pki:
    """A CA, the API server's serving certificate, an admin client certificate, the service-account keys."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
        service_account_key=directory / "sa.key",
        service_account_public_key=directory / "sa.pub",
    )
    ca_key = _private_key(pki.ca_key)
    ca = _certificate(pki.ca_cert, _name("kube-test-ca"), ca_key)
    service_ip = next(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE).hosts())  # the `kubernetes` Service
    dns = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    _certificate(
        pki.serving_cert,
        _name("kube-apiserver"),
        _private_key(pki.serving_key),
        issuer=(ca, ca_key),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        names=[
            *(x509.DNSName(name) for name in dns),
            x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
            x509.IPAddress(service_ip),
        ],
    )
    _certificate(
        pki.admin_cert,
        _name("kube-test-admin", "system:masters"),
        _private_key(pki.admin_key),
        issuer=(ca, ca_key),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
    )
    service_account = _private_key(pki.service_account_key)
    pki.service_account_public_key.write_bytes(
        service_account.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return pki


def write_kubeconfig(path: Path, server: str, pki: Pki) -> None:
    """A kubeconfig (JSON is YAML) for the admin certificate, the only context and the current one."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "kube-test", "cluster": {"server": server, "certificate-authority": str(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": "kube-test-admin",
                "user": {"client-certificate": str(pki.admin_cert), "client-key": str(pki.admin_key)},
            }
        ],
        "contexts": [{"name": "kube-test", "context": {"cluster": "kube-test", "user": "kube-test-admin"}}],
        "current-context": "kube-test",
    }
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o600)


# -- processes ----------------------------------------------------------------------------------------------


# Linux: a child asks for SIGTERM when the test process dies, even by SIGKILL, so nothing outlives a killed
# pytest. prctl is looked up here, in the parent: the child only calls it between fork and exec.
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Process:
    """One process of the control plane (or run beside it), its output going to `log`."""

    name: str
    popen: "subprocess.Popen[bytes]"
    log: Path

    def tail(self, chars: int = _LOG_TAIL_CHARS, since: int = 0) -> str:
        """The last `chars` characters of the log, of what it gained after its first `since` bytes."""
        try:
            with self.log.open("rb") as log:
                log.seek(since)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as error:
            return f"(no log: {error})"
        return text[-chars:]

    def size(self) -> int:
        """The log's length in bytes now (a `since` for `tail`)."""
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_SECONDS; idempotent."""
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


class ControlPlane:
    """etcd, kube-apiserver and kube-controller-manager of one test session; see the module docstring.

    Made with its PKI, ports and kubeconfig in `workdir`; `start()` runs the processes, `stop()` ends them.
    `api` is a KubeClient with the admin certificate; `kubectl()` runs kubectl with the kubeconfig.
    """

    def __init__(self, workdir: Path, bin_dir: Path = BIN_DIR):
        self.workdir = workdir
        self.bin_dir = bin_dir
        self.pki = make_pki(workdir / "pki")
        self.etcd_url = f"http://127.0.0.1:{free_port()}"
        self._peer_url = f"http://127.0.0.1:{free_port()}"
        self.port = free_port()
        self.server = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = workdir / "kubeconfig"
        write_kubeconfig(self.kubeconfig, self.server, self.pki)
        self.api = KubeClient(
            self.server, ca=self.pki.ca_cert, cert=self.pki.admin_cert, key=self.pki.admin_key
        )
        self._processes: list[Process] = []

    def binary(self, name: str) -> Path:
        return self.bin_dir / name

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60.0
    ) -> "subprocess.CompletedProcess[str]":
        """Run kubectl against this cluster (its kubeconfig, a cache directory in `workdir`); raise
        KubectlError, with its stderr, on a non-zero exit unless check=False."""
        done = subprocess.run(
            [str(self.binary("kubectl")), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "HOME": str(self.workdir),
                "KUBECONFIG": str(self.kubeconfig),
            },
        )
        if check and done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stderr}")
        return done

    @contextlib.contextmanager
    def namespace(self, prefix: str) -> Iterator[str]:
        """The name of a fresh namespace (`prefix` + a server-made suffix) whose `default` ServiceAccount
        exists, so Pods can be created in it; deleted afterwards without waiting for it to go."""
        created = self.api.post(
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"generateName": prefix}},
        )
        name: str = created["metadata"]["name"]
        self.api.wait_for(
            f"/api/v1/namespaces/{name}/serviceaccounts",
            lambda account: account["metadata"]["name"] == "default",
            params={"fieldSelector": "metadata.name=default"},
            timeout=NAMESPACE_READY_SECONDS,
            what=f"the default ServiceAccount of namespace {name}",
        )
        try:
            yield name
        finally:
            try:
                self.api.delete(f"/api/v1/namespaces/{name}", propagation_policy="Background")
            except KubeApiError as error:
                if error.code != 404:
                    raise

    # -- lifecycle ------------------------------------------------------------------------------------------

    def start(self, timeout: float = STARTUP_SECONDS) -> None:
        """Start the three processes in order, each once the one before answers; on failure stop them all
        and raise ControlPlaneError with their logs."""
        deadline = time.monotonic() + timeout
        try:
            self._start(deadline, timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, deadline: float, timeout: float) -> None:
        pki = self.pki
        self._spawn(
            "etcd",
            "--name=kube-test",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={self._peer_url}",
            f"--initial-advertise-peer-urls={self._peer_url}",
            f"--initial-cluster=kube-test={self._peer_url}",
            # Throwaway data: no fsync, so a slow disk does not slow every write of the API server.
            "--unsafe-no-fsync=true",
        )
        with httpx.Client(trust_env=False, timeout=2.0) as plain:
            self._wait("etcd to be healthy", deadline, timeout, lambda: _etcd_healthy(plain, self.etcd_url))

        self._spawn(
            "kube-apiserver",
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki.serving_cert}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            # Loopback is no valid Endpoints address: keep the `kubernetes` Service without endpoints.
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
        )
        self._wait("kube-apiserver to be ready (/readyz)", deadline, timeout, self._apiserver_ready)

        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={self.kubeconfig}",
            "--controllers=*",
            "--leader-elect=false",
            "--secure-port=0",
            "--use-service-account-credentials=false",
            f"--service-account-private-key-file={pki.service_account_key}",
            f"--root-ca-file={pki.ca_cert}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        )
        self._wait(
            "kube-controller-manager to create the default ServiceAccount",
            deadline,
            timeout,
            lambda: self._exists("/api/v1/namespaces/default/serviceaccounts/default"),
        )

    def stop(self) -> None:
        """SIGTERM to every process (the last started first), SIGKILL after STOP_SECONDS; idempotent."""
        for process in reversed(self._processes):
            if process.popen.poll() is None:
                process.popen.terminate()
        for process in reversed(self._processes):
            try:
                process.popen.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.popen.kill()
                process.popen.wait()
        self.api.close()

    def running(self) -> list[str]:
        """The names of the processes started and still running."""
        return [p.name for p in self._processes if p.popen.poll() is None]

    def logs(self) -> str:
        """The tail of every process's log, for failure messages."""
        return "\n".join(
            f"---- {p.name} (exit code {p.popen.poll()}), {p.log}:\n{p.tail()}" for p in self._processes
        )

    def run(self, name: str, binary: Path, *args: str, env: Mapping[str, str] | None = None) -> Process:
        """Start another process beside the control plane (its log `<name>.log` in `workdir`, `env` added to
        a bare environment); `stop()` and `logs()` include it."""
        log = self.workdir / f"{name}.log"
        with log.open("wb") as sink:
            popen = subprocess.Popen(
                [str(binary), *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), **(env or {})},
                preexec_fn=_die_with_parent,  # noqa: PLW1509
            )
        process = Process(name, popen, log)
        self._processes.append(process)
        return process

    def _spawn(self, name: str, *args: str) -> None:
        self.run(name, self.binary(name), *args)

    def _wait(self, what: str, deadline: float, timeout: float, ready: Callable[[], bool]) -> None:
        """Poll `ready` until it holds; fail at the deadline or as soon as a process has exited."""
        while not ready():
            exited = [p for p in self._processes if p.popen.poll() is not None]
            if exited or time.monotonic() > deadline:
                why = (
                    f"{', '.join(p.name for p in exited)} exited" if exited else f"not within {timeout:.0f} s"
                )
                raise ControlPlaneError(f"waiting for {what}: {why}\n{self.logs()}")
            time.sleep(0.2)

    def _apiserver_ready(self) -> bool:
        try:
            return self.api.request("GET", "/readyz", timeout=5.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _exists(self, path: str) -> bool:
        try:
            self.api.get(path)
        except KubeApiError as error:
            if error.code == 404:
                return False
            raise
        except httpx.HTTPError:
            return False
        return True


def _etcd_healthy(client: httpx.Client, url: str) -> bool:
    try:
        response = client.get(f"{url}/health")
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("health") == "true"
