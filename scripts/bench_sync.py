"""Sync-hook latency and throughput over real HTTP, against the embedded moto EC2 (no AWS account needed).

    uv run --extra local python scripts/bench_sync.py [--builders 200] [--concurrency 8] [--rounds 3]

The service runs as the container runs it (`uvicorn app.main:app`, one worker) in a subprocess; this
process plays Metacontroller. N PackerBuilders with the seed's spec (distinct names and uids, so they share
one cached base-AMI lookup but each has its own managed-AMI lookup) go through three phases:

- new: the first sync of each builder, which answers with its build Job;
- running: resyncs with that Job running, as Metacontroller's periodic resync sends them;
- idle: resyncs once each builder's AMI is in EC2, tagged active (the steady state of most builders).

Prints one line per phase: requests, latency percentiles and requests per second. Metacontroller gives a
hook 10 s (the chart's metacontroller.hookTimeout) and calls it for every builder on every resync.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from app.local import REGION, start_local_ec2
from app.spec import parse_spec
from app.tags import ACTIVE, CREATE_TIMESTAMP, STATUS, format_timestamp, management_tags

ROOT = Path(__file__).resolve().parent.parent
SEED_REQUEST = ROOT / "examples" / "sync-new.json"
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Body = dict[str, Any]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="scripts/bench_sync.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--builders", type=int, default=200, help="distinct PackerBuilders")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    parser.add_argument("--rounds", type=int, default=3, help="resync rounds of the running and idle phases")
    parser.add_argument("--port", type=int, default=8089, help="HTTP port of the service under test")
    args = parser.parse_args(argv)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    ec2_server = start_local_ec2()
    warm(json.loads(SEED_REQUEST.read_text())["parent"]["spec"]["amiFilters"])
    service = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no user input
        [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(args.port), "--log-level", "warning"],
        env={**os.environ, "LOG_LEVEL": "WARNING"},
        cwd=ROOT,
    )
    try:
        url = f"http://127.0.0.1:{args.port}/sync"
        wait_until_ready(f"http://127.0.0.1:{args.port}/readyz")
        seed = json.loads(SEED_REQUEST.read_text())
        parents = [builder(seed["parent"], index) for index in range(args.builders)]
        print(f"{args.builders} builders, {args.concurrency} requests in flight, one uvicorn worker")

        first = phase("new", url, [request(seed, p, []) for p in parents], args.concurrency)
        jobs = [running(answer["children"][0]) for answer in first]
        resyncs = [
            request(seed, with_status(p, answer["status"]), [job])
            for p, answer, job in zip(parents, first, jobs, strict=True)
        ]
        phase("running", url, resyncs * args.rounds, args.concurrency)

        tag_active_amis(parents)
        ec2_alone(parents[0])
        idle = [request(seed, p, []) for p in parents]
        answers = phase("idle", url, idle * args.rounds, args.concurrency)
        building = sum(1 for answer in answers if answer["children"])
        if building:
            raise SystemExit(
                f"{building} idle syncs asked for a build: the benchmark's AMIs were not adopted"
            )
    finally:
        service.terminate()
        service.wait(timeout=10)
        ec2_server.stop()


def warm(filters: list[Body]) -> None:
    """moto loads its AMI catalogue on the first DescribeImages, which can outlast the hook's 2 s read
    timeout on a busy machine; that cold start is not what the benchmark measures."""
    client = boto3.client(
        "ec2", region_name=REGION, config=Config(read_timeout=120, retries={"max_attempts": 1})
    )
    client.describe_images(Filters=[{"Name": f["name"], "Values": f["values"]} for f in filters])


def wait_until_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            with _DIRECT.open(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def builder(seed_parent: Body, index: int) -> Body:
    parent = copy.deepcopy(seed_parent)
    parent["metadata"]["name"] = f"bench-{index:05d}"
    parent["metadata"]["uid"] = f"00000000-0000-4000-8000-{index:012d}"
    return parent


def with_status(parent: Body, status: Body) -> Body:
    return {**parent, "status": status}


def request(seed: Body, parent: Body, jobs: list[Body]) -> Body:
    return {
        **seed,
        "parent": parent,
        "children": {"Job.batch/v1": {job["metadata"]["name"]: job for job in jobs}},
    }


def running(desired: Body) -> Body:
    """The desired Job as the API server shows it a while after it started."""
    job = copy.deepcopy(desired)
    started = format_timestamp(datetime.now(UTC))
    job["metadata"] |= {"uid": "job-" + job["metadata"]["name"], "creationTimestamp": started}
    job["status"] = {"active": 1, "ready": 1, "startTime": started}
    return job


def tag_active_amis(parents: list[Body]) -> None:
    """One active AMI per builder, made the way Packer makes one, with the tags the hook would have set."""
    client = boto3.client("ec2", region_name=REGION)
    base = client.describe_images(Owners=["602401143452"])["Images"][0]["ImageId"]
    now = format_timestamp(datetime.now(UTC))
    for parent in parents:
        spec = parse_spec(parent["spec"])
        tags = management_tags(parent["metadata"]["name"], spec) | {STATUS: ACTIVE, CREATE_TIMESTAMP: now}
        instance = client.run_instances(ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro")
        instance_id = instance["Instances"][0]["InstanceId"]
        client.create_image(
            InstanceId=instance_id,
            Name=parent["metadata"]["name"],
            TagSpecifications=[
                {"ResourceType": "image", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
            ],
        )
        client.terminate_instances(InstanceIds=[instance_id])


def ec2_alone(parent: Body) -> None:
    """The managed-AMI lookup an idle sync makes, timed straight against the EC2 stand-in, one at a time."""
    client = boto3.client("ec2", region_name=REGION)
    tags = management_tags(parent["metadata"]["name"], parse_spec(parent["spec"]))
    filters: list[Any] = [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
    latencies = []
    for _ in range(20):
        started = time.perf_counter()
        client.describe_images(Owners=["self"], Filters=filters)
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    print(
        f"(EC2 stand-in alone: one DescribeImages of the idle phase takes p50 {percentile(latencies, 50):.1f} ms)"
    )


def phase(name: str, url: str, bodies: list[Body], concurrency: int) -> list[Body]:
    post = timed_post(url)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(post, bodies))
    wall = time.perf_counter() - started
    latencies = sorted(seconds for seconds, _ in results)
    print(
        f"{name:8} {len(bodies):6d} syncs  "
        f"p50 {percentile(latencies, 50):7.1f} ms  p95 {percentile(latencies, 95):7.1f} ms  "
        f"p99 {percentile(latencies, 99):7.1f} ms  max {latencies[-1] * 1000:7.1f} ms  "
        f"mean {statistics.fmean(latencies) * 1000:7.1f} ms  {len(bodies) / wall:7.1f} syncs/s"
    )
    return [answer for _, answer in results]


def timed_post(url: str) -> Callable[[Body], tuple[float, Body]]:
    def post(body: Body) -> tuple[float, Body]:
        data = json.dumps(body).encode()
        http = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})  # noqa: S310 - the loopback http URL built above
        started = time.perf_counter()
        with _DIRECT.open(http, timeout=30) as response:
            answer: Body = json.loads(response.read())
        return time.perf_counter() - started, answer

    return post


def percentile(sorted_seconds: list[float], pct: int) -> float:
    index = min(len(sorted_seconds) - 1, round(pct / 100 * (len(sorted_seconds) - 1)))
    return sorted_seconds[index] * 1000


if __name__ == "__main__":
    main()
