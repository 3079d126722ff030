"""The sync hook's performance goals (issue 9), measured in one run over real HTTP against moto.

    uv run --extra local python scripts/bench_sync.py [--builders 200] [--rounds 3] [--concurrency 5]

The service runs as the chart runs it (`uvicorn app.main:app`, one worker, LOG_LEVEL=INFO, LOG_FORMAT=json,
ACCESS_LOG=false: its one JSON line per answer is part of what is measured; the environment may override
them) in a subprocess pinned to one CPU, its log going to a temporary file; this process plays
Metacontroller from the other CPUs (if any). EC2 and SSM are an embedded moto server behind a counting proxy
(tests/fakes/aws_proxy.py): the hook's AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL_SSM point at the proxy, which
counts every call by API (`ec2:DescribeImages`) and can hold EC2 calls to play a slow EC2. The script's
own setup calls (the AMIs "Packer built") go to moto directly and are not counted.

N builders share the seed's spec (examples/sync-new.json: one base selector) under distinct names and uids,
and each goes the way a builder goes before its steady state (its AWS calls printed per phase):

- new: the first sync (no AMI yet: the answer holds its build Job);
- running: resyncs while that Job runs;
- built: the Job has succeeded and its pod reports the AMI Packer made (untagged, in moto); the hook tags
  it; each builder's answer status is fed back until the answer changes nothing (the builder is Ready,
  its finished Job and pod still in the request, as Metacontroller sends them while the hook's Job
  history limits keep the Job).

Then, measured:

1. warm: with /readyz 200 and every builder Ready once, R rounds of resyncs of all N: AWS calls per sync
   by API (background refreshes included);
2. throughput: those steady-state syncs against the hook and against a bare FastAPI endpoint that only
   parses the body into `HookRequest` (a plain `def` endpoint, as the issue measured it; the same as an
   `async def` endpoint is shown beside it), all pinned to the same CPU, same load generator (threads with
   keep-alive connections), same requests, best of `--repeats` alternating runs: throughput ratio, p50/p99;
3. slow EC2: the proxy holds every EC2 call 5 s; warm syncs (5 in flight, paced) go on until a background
   refresh of the index (every INDEX_REFRESH_SECONDS) has been held through: the latency of the syncs made
   while an EC2 call was held, and of the others as the control;
4. RSS: more builders the same way up to 1,000 (each Ready once, then all synced again): the hook's VmRSS.

Answers other than 200 never stop the run: each phase counts and prints them. Timing is not asserted
anywhere; tests run this with tiny numbers (tests/integration/test_bench_script.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import http.client
import json
import logging
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import boto3
from botocore.config import Config
from fastapi import FastAPI

from app.core.build import PACKER_CONTAINER
from app.local import REGION, start_local_ec2
from app.model.hooks import HookRequest
from app.model.tags import format_timestamp

ROOT = Path(__file__).resolve().parent.parent
# Running `python scripts/bench_sync.py` puts scripts/ first on sys.path, not the project: the AWS proxy is
# the tests' own (tests/fakes/aws_proxy.py), and `tests` is no installed package.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fakes.aws_proxy import AwsProxy  # noqa: E402

SEED_REQUEST = ROOT / "examples" / "sync-new.json"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# The service's defaults (app/model/settings.py), unless the environment sets them for the hook.
INDEX_REFRESH_SECONDS = 60.0
BASE_IMAGE_CACHE_SECONDS = 300.0

GOAL_CALLS_PER_SYNC = 0.02
GOAL_THROUGHPUT_RATIO = 0.6
GOAL_P99_MS = 10.0
GOAL_SLOW_EC2_MS = 50.0
GOAL_RSS_MB = 150.0

Body = dict[str, Any]


def bare_app() -> FastAPI:
    """The baseline: FastAPI parsing the same body into the same model, and nothing else.

    A plain `def` endpoint, FastAPI's default (run in a worker thread), as when issue 9 set its goals.
    """
    api = FastAPI()

    @api.post("/sync")
    def sync(request: HookRequest) -> dict[str, Any]:
        return {}

    @api.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return api


def bare_async_app() -> FastAPI:
    """The same baseline as an `async def` endpoint (no worker thread): the floor the hook is also shown
    against, since the hook answers steady syncs in the event loop."""
    api = FastAPI()

    @api.post("/sync")
    async def sync(request: HookRequest) -> dict[str, Any]:
        return {}

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return api


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench_sync.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--builders", type=int, default=200, help="builders sharing one base selector")
    parser.add_argument("--rounds", type=int, default=3, help="resync rounds of the running and warm phases")
    parser.add_argument("--concurrency", type=int, default=5, help="syncs in flight (Metacontroller: 5)")
    parser.add_argument("--requests", type=int, default=5000, help="requests per throughput run")
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per endpoint (best kept)")
    parser.add_argument("--slow-delay", type=float, default=5.0, help="seconds EC2 holds every call")
    parser.add_argument(
        "--slow-max-seconds",
        type=float,
        default=0.0,
        help="longest wait for a held background refresh (default: the hook's refresh period + 2 ticks)",
    )
    parser.add_argument("--rss-builders", type=int, default=1000, help="builders indexed for the RSS")
    parser.add_argument("--port", type=int, default=8089, help="HTTP port of the hook")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    cores = sorted(os.sched_getaffinity(0))
    server_cpu, load_cpus = cores[0], (cores[1:] or cores)
    os.sched_setaffinity(0, load_cpus)  # before any thread starts: moto, the proxy and the load follow
    print_machine(cores)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    moto = start_local_ec2()
    fast_moto_tags()
    proxy = AwsProxy(os.environ["AWS_ENDPOINT_URL_EC2"])
    proxy.start()
    seed = json.loads(SEED_REQUEST.read_text())
    warm_moto(seed["parent"]["spec"]["amiFilters"])
    # The chart's logging (helm values hook.logLevel, logFormat, accessLog) unless the environment says.
    env = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json", "ACCESS_LOG": "false"} | dict(os.environ)
    env |= {"AWS_ENDPOINT_URL_EC2": proxy.url, "AWS_ENDPOINT_URL_SSM": proxy.url}
    env.setdefault("INDEX_REGIONS", seed["parent"]["spec"]["region"])
    hook: Server | None = None
    bares: list[Server] = []
    try:
        hook = Server.start("hook", ["app.main:app"], args.port, server_cpu, env, ready_path="/readyz")
        print(
            f"setup: {args.builders} builders sharing one base selector; hook and bare endpoints: uvicorn, "
            f"one worker, pinned to CPU {server_cpu}; load generator on CPU {cpus(load_cpus)}; "
            f"{args.concurrency} syncs in flight"
        )
        print(
            f"setup: hook logging LOG_LEVEL={env['LOG_LEVEL']} LOG_FORMAT={env['LOG_FORMAT']} "
            f"ACCESS_LOG={env['ACCESS_LOG']}; bare endpoints: uvicorn --no-access-log"
        )
        print(f"setup: hook RSS {hook.rss_mb():.1f} MB once ready (index of {REGION} filled)")
        client = Client(hook.port)
        parents = [builder(seed["parent"], i) for i in range(args.builders)]
        steady = bring_up(client, proxy, seed, parents, args.rounds, args.concurrency)
        if not steady:
            raise SystemExit("no builder became Ready: nothing to measure")
        if not hook.ready():
            print("warning: /readyz is not 200 after every builder was Ready once")

        calls_per_sync = warm_calls(client, proxy, steady, args.rounds, args.concurrency)
        for name, factory in (("bare", "bare_app"), ("bare-async", "bare_async_app")):
            bare_args = ["--app-dir", "scripts", "--factory", f"bench_sync:{factory}", "--no-access-log"]
            bares.append(Server.start(name, bare_args, free_port(), server_cpu, env))
        ratio, p99 = throughput(hook, bares, proxy, steady, args)
        for server in bares:
            server.stop()
        bares.clear()
        slow_ms = slow_ec2(client, proxy, steady, args, env)
        rss = rss_at(client, hook, proxy, seed, parents, steady, args)
        print_goals(calls_per_sync, ratio, p99, slow_ms, rss, args.rss_builders)
        print(f"end: load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for server in [*bares, *([hook] if hook is not None else [])]:
            server.stop()
        proxy.stop()
        moto.stop()


# -- machine and servers ------------------------------------------------------------------------------------


def print_machine(cores: Sequence[int]) -> None:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"machine: {model}, {os.cpu_count()} cores ({len(cores)} usable: {cpus(cores)}), "
        f"{platform.python_implementation()} {platform.python_version()}, {platform.system()} "
        f"{platform.release()}, load average {load}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("fastapi", "pydantic", "uvicorn", "moto")
    )
    print(f"code: {git_version()}; {versions}")


def git_version() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH, fixed arguments
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "commit unknown (not a git checkout)"
    return f"commit {done.stdout.strip()}"


def cpus(cores: Sequence[int]) -> str:
    return ",".join(str(c) for c in cores)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One uvicorn worker in a subprocess, every thread of it pinned to one CPU."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    cpu: int
    log: IO[bytes]
    """The server's stdout and stderr (a temporary file); its end is printed if the server dies."""

    @classmethod
    def start(
        cls, name: str, app: list[str], port: int, cpu: int, env: dict[str, str], ready_path: str = "/healthz"
    ) -> Server:
        command = [sys.executable, "-m", "uvicorn", *app, "--host", "127.0.0.1", "--port", str(port)]
        log = tempfile.TemporaryFile(prefix=f"bench-{name}-")  # noqa: SIM115 - closed in stop()
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules, no user input
            command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        server = cls(name, process, port, cpu, log)
        server.pin()
        server.wait(ready_path)
        server.pin()  # threads started meanwhile (the index refresher) inherit from a pinned one or are pinned now
        return server

    def log_tail(self, lines: int = 20) -> str:
        self.log.seek(0)
        return b"\n".join(self.log.read().splitlines()[-lines:]).decode("utf-8", "replace")

    def pin(self) -> None:
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(ProcessLookupError, PermissionError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task.name), {self.cpu})

    def wait(self, path: str) -> None:
        deadline = time.monotonic() + 60
        while not self._answers(path):
            if self.process.poll() is not None:
                raise SystemExit(
                    f"{self.name} server exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.name} server did not answer {path} within 60 s")
            time.sleep(0.1)

    def ready(self) -> bool:
        return self._answers("/readyz")

    def _answers(self, path: str) -> bool:
        try:
            with _DIRECT.open(f"http://127.0.0.1:{self.port}{path}", timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def status(self) -> dict[str, str]:
        lines = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def rss_mb(self, key: str = "VmRSS") -> float:
        """Megabytes (NaN once the process is gone)."""
        try:
            return int(self.status()[key].split()[0]) / 1024  # kB
        except (OSError, KeyError):
            return float("nan")

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# -- moto ---------------------------------------------------------------------------------------------------


def fast_moto_tags() -> None:
    """moto reads one resource's tags by scanning every tag of every resource, so DescribeImages with tag
    filters is quadratic in the AMIs (5 s with 1,000 tagged AMIs, past the hook's 2 s read timeout). The
    stand-in is not what is measured: read them by resource id instead (same answer)."""
    from moto.ec2.models.core import TaggedEC2Resource  # noqa: PLC0415 - after start_local_ec2 set moto up
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix  # noqa: PLC0415

    def get_tags(self: Any) -> list[dict[str, str]]:
        if not self.id:
            return []
        tags: dict[str, str] = self.ec2_backend.tags.get(self.id, {})
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
        return [
            {"resource_id": self.id, "key": k, "value": v, "resource_type": kind} for k, v in tags.items()
        ]

    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]


def moto_ec2() -> Any:
    """A client of moto itself (not through the proxy: the script's own calls are not counted)."""
    return boto3.client(
        "ec2", region_name=REGION, config=Config(read_timeout=120, retries={"max_attempts": 1})
    )


def warm_moto(filters: list[Body]) -> None:
    """moto loads its AMI catalogue on the first DescribeImages, which can outlast the hook's 2 s read
    timeout on a busy machine; that cold start is not what the benchmark measures."""
    client = moto_ec2()
    client.describe_images(Filters=[{"Name": f["name"], "Values": f["values"]} for f in filters])
    client.describe_images(Owners=["self"])


def packer_amis(parents: Sequence[Body]) -> list[str]:
    """One AMI per builder, made the way Packer makes one (from an instance of the base; no hook tags yet)."""
    client = moto_ec2()
    base = client.describe_images(Owners=["602401143452"])["Images"][0]["ImageId"]
    instance = client.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")
    instance_id = instance["Instances"][0]["InstanceId"]
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    ids = [
        client.create_image(InstanceId=instance_id, Name=f"{p['metadata']['name']}-{stamp}")["ImageId"]
        for p in parents
    ]
    client.terminate_instances(InstanceIds=[instance_id])
    return ids


# -- requests -----------------------------------------------------------------------------------------------


def builder(seed_parent: Body, index: int) -> Body:
    parent = copy.deepcopy(seed_parent)
    parent["metadata"]["name"] = f"bench-{index:05d}"
    parent["metadata"]["uid"] = f"00000000-0000-4000-8000-{index:012d}"
    return parent


def request(
    seed: Body,
    parent: Body,
    status: Body | None = None,
    jobs: Sequence[Body] = (),
    pods: Sequence[Body] = (),
) -> Body:
    return {
        **seed,
        "parent": {**parent, "status": status} if status is not None else parent,
        "children": {"Job.batch/v1": {job["metadata"]["name"]: job for job in jobs}},
        "related": {"Pod.v1": {pod["metadata"]["name"]: pod for pod in pods}},
    }


def running(desired: Body) -> Body:
    """The desired Job as the API server shows it a while after it started."""
    job = copy.deepcopy(desired)
    started = format_timestamp(datetime.now(UTC))
    job["metadata"] |= {"uid": "job-" + job["metadata"]["name"], "creationTimestamp": started}
    job["status"] = {"active": 1, "ready": 1, "startTime": started}
    return job


def finished(job: Body, region: str, image_id: str) -> tuple[Body, Body]:
    """The Job once it succeeded, and its pod: the Packer container's termination message names the AMI."""
    done = copy.deepcopy(job)
    now = format_timestamp(datetime.now(UTC))
    done["status"] = {
        "startTime": job["status"]["startTime"],
        "completionTime": now,
        "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now},
        ],
    }
    name = job["metadata"]["name"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-x7k2p",
            "namespace": job["metadata"].get("namespace", "default"),
            "labels": {**job["spec"]["template"]["metadata"]["labels"], "job-name": name},
        },
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": PACKER_CONTAINER,
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "reason": "Completed",
                            "message": f"{region}:{image_id}\ncommit={'0' * 40}",
                        }
                    },
                }
            ],
        },
    }
    return done, pod


def is_ready(status: Body) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


# -- load ---------------------------------------------------------------------------------------------------


@dataclass
class Load:
    """What one batch of requests got: when each was sent and answered, answers of the 200s, the rest
    counted by status (or by exception, for a connection that failed)."""

    spans: list[tuple[float, float]] = field(default_factory=list)
    """(sent, answered) of every request, on `time.perf_counter`'s clock."""
    answers: dict[int, Body] = field(default_factory=dict)
    failures: Counter[str] = field(default_factory=Counter)
    wall: float = 0.0

    @property
    def latencies(self) -> list[float]:
        return [end - start for start, end in self.spans]

    @property
    def sent(self) -> int:
        return len(self.spans)

    def subset(self, keep: Callable[[float, float], bool]) -> Load:
        """The requests whose (sent, answered) pass `keep` (answers and failures not carried over)."""
        return Load(spans=[span for span in self.spans if keep(*span)], wall=self.wall)

    def ms(self, pct: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))
        return ordered[index] * 1000

    def summary(self, totals: bool = True) -> str:
        """Count and latencies; with `totals`, also the rate over the whole batch and its non-200s."""
        if not self.spans:
            return "no requests"
        line = (
            f"{self.sent} syncs  p50 {self.ms(50):.1f} ms  p99 {self.ms(99):.1f} ms  max {self.ms(100):.1f} ms"
            f"  mean {statistics.fmean(self.latencies) * 1000:.1f} ms"
        )
        if totals:
            line += f"  {self.sent / self.wall:.1f} syncs/s  non-200: {failures(self.failures)}"
        return line


def failures(counted: Counter[str]) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(counted.items())) if counted else "none"


class Client:
    """Sends bodies with N worker threads, each on its own keep-alive connection (Metacontroller's way)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def run(
        self,
        bodies: Sequence[bytes],
        concurrency: int,
        *,
        parse: bool = True,
        stop: threading.Event | None = None,
        pace: float = 0.0,
    ) -> Load:
        """Send every body once (or, with `stop`, round and round until it is set)."""
        load = Load()
        lock = threading.Lock()
        position = iter(range(sys.maxsize))

        def next_index() -> int | None:
            with lock:
                index = next(position)
            if stop is None:
                return index if index < len(bodies) else None
            return None if stop.is_set() else index

        def work() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            spans: list[tuple[float, float]] = []
            answers: dict[int, Body] = {}
            failed: Counter[str] = Counter()
            while (index := next_index()) is not None:
                body = bodies[index % len(bodies)]
                started = time.perf_counter()
                try:
                    connection.request("POST", "/sync", body, {"Content-Type": "application/json"})
                    response = connection.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException) as error:
                    spans.append((started, time.perf_counter()))
                    failed[type(error).__name__] += 1
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    continue
                spans.append((started, time.perf_counter()))
                if response.status != 200:
                    failed[str(response.status)] += 1
                elif parse:
                    answers[index] = json.loads(data)
                if pace:
                    time.sleep(pace)
            connection.close()
            with lock:
                load.spans.extend(spans)
                load.answers.update(answers)
                load.failures.update(failed)

        workers = [threading.Thread(target=work) for _ in range(max(1, concurrency))]
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        load.wall = time.perf_counter() - started
        return load


def encoded(bodies: Sequence[Body]) -> list[bytes]:
    return [json.dumps(body).encode() for body in bodies]


def calls_line(counts: Counter[str]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{api} {n}" for api, n in sorted(counts.items()))


# -- phases -------------------------------------------------------------------------------------------------


def bring_up(
    client: Client,
    proxy: AwsProxy,
    seed: Body,
    parents: list[Body],
    rounds: int,
    concurrency: int,
    label: str = "phase",
) -> list[bytes]:
    """new, running, built: each builder's first build until it is Ready. Returns one steady-state request
    per Ready builder (its answer's status fed back: the hook answers it without changing anything)."""
    region = seed["parent"]["spec"]["region"]
    proxy.reset()
    first = client.run(encoded([request(seed, p) for p in parents]), concurrency)
    print(f"{label} new:      {first.summary()}  AWS calls: {calls_line(proxy.reset())}")
    building: dict[int, tuple[Body, Body]] = {}  # builder -> (its status, its running Job)
    for i in range(len(parents)):
        answer = first.answers.get(i)
        if answer and answer.get("children"):
            building[i] = (answer["status"], running(answer["children"][0]))
    for round_ in range(1, rounds + 1):  # Metacontroller writes each answer's status before the next resync
        order = list(building)
        resyncs = [request(seed, parents[i], *building[i][:1], [building[i][1]]) for i in order]
        again = client.run(encoded(resyncs), concurrency)
        for k, i in enumerate(order):
            if (answer := again.answers.get(k)) is not None:
                building[i] = (answer["status"], building[i][1])
        print(f"{label} running {round_}: {again.summary()}  AWS calls: {calls_line(proxy.reset())}")

    amis = packer_amis([parents[i] for i in building])
    # builder -> (status last answered, finished Job, its pod)
    pending: dict[int, tuple[Body, Body, Body]] = {}
    for (i, (status, job)), ami in zip(building.items(), amis, strict=True):
        pending[i] = (status, *finished(job, region, ami))
    steady: dict[int, Body] = {}
    syncs, failed, passes = 0, Counter[str](), 0
    while pending and passes < 6:
        passes += 1
        order = list(pending)
        bodies = [request(seed, parents[i], pending[i][0], [pending[i][1]], [pending[i][2]]) for i in order]
        load = client.run(encoded(bodies), concurrency)
        syncs, failed = syncs + load.sent, failed + load.failures
        for k, i in enumerate(order):
            answer = load.answers.get(k)
            if answer is None:
                continue
            kept = sorted(child["metadata"]["name"] for child in answer.get("children") or [])
            if answer["status"] == pending[i][0] and kept == [pending[i][1]["metadata"]["name"]]:
                steady[i] = bodies[k]
                del pending[i]
            else:
                pending[i] = (answer["status"], *pending[i][1:])
    ready = sum(1 for body in steady.values() if is_ready(body["parent"]["status"]))
    print(
        f"{label} built:    {ready}/{len(parents)} builders Ready and steady after {passes} passes "
        f"({syncs} syncs, non-200: {failures(failed)})  AWS calls: {calls_line(proxy.reset())}"
    )
    return encoded([steady[i] for i in sorted(steady) if is_ready(steady[i]["parent"]["status"])])


def warm_calls(client: Client, proxy: AwsProxy, steady: list[bytes], rounds: int, concurrency: int) -> float:
    proxy.reset()
    load = client.run(steady * rounds, concurrency, parse=False)
    counts = proxy.reset()
    per_sync = sum(counts.values()) / max(1, load.sent)
    print(f"1. warm:        {load.summary()}")
    print(f"1. warm calls by API: {calls_line(counts)}")
    print(
        f"1. warm calls/sync: {per_sync:.4f} ({sum(counts.values())} AWS calls in {load.sent} syncs of "
        f"{len(steady)} Ready builders, {rounds} rounds; background refreshes included)"
    )
    return per_sync


def throughput(
    hook: Server, bares: list[Server], proxy: AwsProxy, steady: list[bytes], args: argparse.Namespace
) -> tuple[float, float]:
    """Best of `repeats` runs per endpoint, alternating; returns (hook/bare syncs per second, hook p99).

    The goal is against `bare` (the baseline the issue measured); other baselines are printed beside it.
    """
    bodies = [steady[i % len(steady)] for i in range(args.requests)]
    warmup = bodies[: min(len(bodies), 300)]
    servers = [*bares, hook]
    for server in servers:
        Client(server.port).run(warmup, args.concurrency, parse=False)
    best: dict[str, tuple[float, Load]] = {}
    proxy.reset()
    for _ in range(max(1, args.repeats)):
        for server in servers:
            cpu = server.cpu_seconds()
            load = Client(server.port).run(bodies, args.concurrency, parse=False)
            busy = (server.cpu_seconds() - cpu) / load.wall
            rate = load.sent / load.wall
            print(f"2. run {server.name:10} {load.summary()}  server CPU {busy:.0%} of one core")
            if server.name not in best or rate > best[server.name][0]:
                best[server.name] = (rate, load)
    for server in servers:
        print(
            f"2. throughput {server.name}: {best[server.name][1].summary()} (best of {max(1, args.repeats)})"
        )
    for server in bares[1:]:
        print(f"2. throughput ratio hook/{server.name}: {best['hook'][0] / best[server.name][0]:.2f}")
    ratio = best["hook"][0] / best["bare"][0]
    p99 = best["hook"][1].ms(99)
    print(
        f"2. throughput ratio hook/bare: {ratio:.2f}  hook p50 {best['hook'][1].ms(50):.1f} ms  "
        f"hook p99 {p99:.1f} ms  (AWS calls meanwhile: {calls_line(proxy.reset())})"
    )
    return ratio, p99


def slow_ec2(
    client: Client, proxy: AwsProxy, steady: list[bytes], args: argparse.Namespace, env: dict[str, str]
) -> float:
    """EC2 holds every call `slow_delay` s. Warm syncs (5 in flight, each worker pausing 20 ms between its
    syncs) go on until the hook's background refresh has come, been held and been given up (or for at most
    a refresh period and two ticks). Returns the slowest of the syncs made while an EC2 call was held."""
    period = float(env.get("INDEX_REFRESH_SECONDS") or INDEX_REFRESH_SECONDS)
    base = float(env.get("BASE_IMAGE_CACHE_SECONDS") or BASE_IMAGE_CACHE_SECONDS)
    longest = args.slow_max_seconds or period + 2 * max(1.0, min(period, base) / 4)
    proxy.reset()
    proxy.held_spans.clear()
    proxy.slow("ec2", args.slow_delay)
    stop = threading.Event()
    result: list[Load] = []
    runner = threading.Thread(
        target=lambda: result.append(client.run(steady, args.concurrency, stop=stop, pace=0.02, parse=False))
    )
    started = time.perf_counter()
    runner.start()
    while time.perf_counter() - started < longest + 2 * args.slow_delay + 5:
        spans = list(proxy.held_spans)
        if not proxy.held and spans and time.perf_counter() - spans[-1][1] > 1:
            break  # a refresh was held through, and nothing is held now
        if not proxy.held_total and time.perf_counter() - started > longest:
            break
        time.sleep(0.05)
    stop.set()
    runner.join()
    proxy.slow("ec2", 0)
    load, held = result[0], list(proxy.held_spans)

    def during(sent: float, answered: float) -> bool:
        return any(sent < end and answered > start for start, end in held)

    slow = load.subset(during)
    other = load.subset(lambda sent, answered: not during(sent, answered))
    print(
        f"3. slow EC2: every EC2 call held {args.slow_delay:g} s; {len(held)} calls held "
        f"({calls_line(proxy.reset())}) in {time.perf_counter() - started:.0f} s of warm syncs, "
        f"non-200: {failures(load.failures)}"
        + ("" if held else " (no background refresh came: nothing was held)")
    )
    print(f"3. slow EC2, syncs while a call was held: {slow.summary(totals=False)}")
    print(f"3. slow EC2, the other syncs (control):   {other.summary(totals=False)}")
    deadline = time.perf_counter() + args.slow_delay + 2
    while proxy.held and time.perf_counter() < deadline:
        time.sleep(0.1)
    return slow.ms(100) if slow.spans else float("nan")


def rss_at(
    client: Client,
    hook: Server,
    proxy: AwsProxy,
    seed: Body,
    parents: list[Body],
    steady: list[bytes],
    args: argparse.Namespace,
) -> float:
    """Builders added up to `rss_builders` (each Ready once), all synced once more; the hook's VmRSS."""
    print(f"4. RSS with {len(parents)} builders: {hook.rss_mb():.1f} MB (after the phases above)")
    more = [builder(seed["parent"], i) for i in range(len(parents), args.rss_builders)]
    everyone = steady + (bring_up(client, proxy, seed, more, 1, args.concurrency, "4.") if more else [])
    load = client.run(everyone, args.concurrency, parse=False)
    mb = hook.rss_mb()
    print(
        f"4. RSS: {mb:.1f} MB VmRSS (peak {hook.rss_mb('VmHWM'):.1f} MB) with {len(parents) + len(more)} "
        f"builders indexed, {len(everyone)} Ready and synced again (non-200: {failures(load.failures)})"
    )
    return mb


def print_goals(
    calls_per_sync: float, ratio: float, p99: float, slow_ms: float, rss: float, rss_builders: int
) -> None:
    def verdict(measured: float, met: bool) -> str:
        return "not measured" if math.isnan(measured) else "met" if met else "MISSED"

    goals = [
        (
            "warm AWS calls per sync",
            f"{calls_per_sync:.4f} <= {GOAL_CALLS_PER_SYNC}",
            verdict(calls_per_sync, calls_per_sync <= GOAL_CALLS_PER_SYNC),
        ),
        (
            "throughput hook/bare",
            f"{ratio:.2f} >= {GOAL_THROUGHPUT_RATIO}",
            verdict(ratio, ratio >= GOAL_THROUGHPUT_RATIO),
        ),
        (
            "hook p99 at concurrency 5",
            f"{p99:.1f} ms <= {GOAL_P99_MS:g} ms",
            verdict(p99, p99 <= GOAL_P99_MS),
        ),
        (
            "slowest warm sync while EC2 was held",
            f"{slow_ms:.1f} ms < {GOAL_SLOW_EC2_MS:g} ms",
            verdict(slow_ms, slow_ms < GOAL_SLOW_EC2_MS),
        ),
        (
            f"RSS at {rss_builders} builders",
            f"{rss:.1f} MB <= {GOAL_RSS_MB:g} MB",
            verdict(rss, rss <= GOAL_RSS_MB),
        ),
    ]
    for name, measured, outcome in goals:
        print(f"goal {name}: {measured}: {outcome}")


if __name__ == "__main__":
    main()
