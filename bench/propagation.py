#!/usr/bin/env python3
"""Ring propagation: how long from a change at the control plane until every
one of 4 data planes serves the new ring.

Each sample is one `PUT /config` (alternating K = 9 and K = 10) timed at the
client: the control plane publishes a new version, every data plane compiles
the ring, swaps it in and acknowledges it, and only then does the control
plane answer. Right after the answer, each data plane's /metrics must already
report the new version (checked for every sample). Results go to
bench/RESULTS.md (between the `bench:propagation` markers).
"""

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import execute, free_ports, http, log, wait_http, write_section  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="directory with the release binaries")
    parser.add_argument("--samples", type=int, default=300, help="ring changes timed (default 300)")
    parser.add_argument("--data-planes", type=int, default=4, help="data planes that must apply each (default 4)")
    parser.add_argument("--smoke", action="store_true", help="20 samples, no RESULTS.md update")
    args = parser.parse_args()
    if args.smoke:
        args.samples = 20
    execute(args, run, write)


def run(args, procs):
    b = args.bin_dir
    http_port, grpc_port = free_ports(2)
    cp = procs.start([f"{b}/control-plane", "--http-listen", f"127.0.0.1:{http_port}", "--grpc-listen",
                      f"127.0.0.1:{grpc_port}", "--replica-bin", f"{b}/replica", "--announce"],
                     stdout=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="warn"))
    if not cp.stdout.readline().startswith("ready"):
        raise SystemExit("the control plane did not start")
    metrics = []
    for _ in range(args.data_planes):
        port, metrics_port = free_ports(2)
        procs.start([f"{b}/data-plane", "--listen", f"127.0.0.1:{port}", "--control-plane-grpc",
                     f"http://127.0.0.1:{grpc_port}", "--control-plane-http", f"127.0.0.1:{http_port}",
                     "--metrics-listen", f"127.0.0.1:{metrics_port}", "--workers", "1"],
                    env=dict(os.environ, RUST_LOG="warn"))
        wait_http(f"http://127.0.0.1:{port}/home")
        metrics.append(f"http://127.0.0.1:{metrics_port}/metrics")
    admin = f"http://127.0.0.1:{http_port}"
    samples_ms = []
    for i in range(args.samples):
        vnodes = 9 + (i % 2)
        t0 = time.perf_counter()
        answer = json.loads(http("PUT", f"{admin}/config", json.dumps({"vnodes": vnodes})))
        samples_ms.append((time.perf_counter() - t0) * 1000)
        version = answer["message"]["version"]
        for url in metrics:
            text = urllib.request.urlopen(url, timeout=5).read().decode()
            applied = int(re.search(r"^ringlb_ring_version (\d+)$", text, re.M).group(1))
            if applied < version:
                raise SystemExit(f"{url} serves version {applied} after /config answered {version}")
    log(f"{args.samples} changes, every data plane serving each one when /config answered")
    return {
        "data_planes": args.data_planes,
        "samples": args.samples,
        "p50_ms": statistics.median(samples_ms),
        "p99_ms": percentile(samples_ms, 99),
        "max_ms": max(samples_ms),
    }


def write(args, r):
    lines = [
        f"Measured {datetime.date.today().isoformat()} with `make bench` (`bench/propagation.py --samples {args.samples} "
        f"--data-planes {args.data_planes}`): {r['samples']} ring changes (`PUT /config`, alternating K), each timed "
        f"from the request to the answer, which the control plane sends only after all {r['data_planes']} data planes "
        "acknowledged the new version; after every answer each data plane's `/metrics` was checked to report it.",
        "",
        "| data planes | samples | p50 | p99 | max |",
        "|---:|---:|---:|---:|---:|",
        f"| {r['data_planes']} | {r['samples']} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['max_ms']:.2f} ms |",
    ]
    write_section("propagation", "Ring propagation", lines)


if __name__ == "__main__":
    main()
