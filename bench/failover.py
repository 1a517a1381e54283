#!/usr/bin/env python3
"""A replica killed under load: failed requests, and the time until N is
restored.

Starts the control plane (3 replicas) and a data plane pinned like `run.py`
(data plane on core 0; wrk, the replicas and the control plane on core 1).
Each round runs wrk at full speed on `/home` (spread over the replicas by
random request ids: tens of thousands of requests per second, well above the
10k req/s the issue asks for), `kill -9`s one replica two seconds in, and
polls the control plane's `/rep` every 2 ms from the kill: when the replica
is gone from the list (off the ring) and when N is back to 3 (its
replacement answered heartbeats and every data plane routes by the new
ring). wrk counts every failed request: connection errors, timeouts and any
status outside 2xx/3xx. Results go to bench/RESULTS.md (between the
`bench:failover` markers).
"""

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import children, execute, free_ports, http, log, wait_http, write_section  # noqa: E402


def replica_pid(control_plane_pid, name):
    for pid in children(control_plane_pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"--server-id" in args and args[args.index(b"--server-id") + 1].decode() == name:
            return pid
    raise SystemExit(f"no process for replica {name}")


def replicas(admin):
    return json.loads(http("GET", f"{admin}/rep"))["message"]["replicas"]


def one_round(args, admin, cp_pid, dp_port):
    victim = replicas(admin)[0]
    wrk = subprocess.Popen(
        ["taskset", "-c", "1", "wrk", "-t2", "-c64", f"-d{args.duration}s", "-s", os.path.join(HERE, "report.lua"),
         f"http://127.0.0.1:{dp_port}/home"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, SPREAD="0"))
    time.sleep(2)
    pid = replica_pid(cp_pid, victim)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    off_ring_ms = restored_ms = None
    deadline = killed + 10
    while time.monotonic() < deadline and restored_ms is None:
        listed = replicas(admin)
        now_ms = (time.monotonic() - killed) * 1000
        if victim not in listed and off_ring_ms is None:
            off_ring_ms = now_ms
        if victim not in listed and len(listed) == 3:
            restored_ms = now_ms
        time.sleep(0.002)
    out, _ = wrk.communicate(timeout=args.duration + 30)
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    fields = dict(kv.split("=") for kv in line.split()[1:])
    seconds = int(fields["duration_us"]) / 1e6
    result = {
        "killed": victim,
        "requests": int(fields["requests"]),
        "rps": int(fields["requests"]) / seconds,
        "failed": int(fields["errors"]),
        "off_ring_ms": off_ring_ms,
        "restored_ms": restored_ms,
    }
    log(f"killed {victim}: {result['rps']:.0f} req/s, {result['failed']} of {result['requests']} failed, "
        f"off the ring after {off_ring_ms:.0f} ms, N restored after {restored_ms:.0f} ms")
    return result


def run(args, procs):
    b = args.bin_dir
    http_port, grpc_port, dp_port = free_ports(3)
    cp = procs.start(["taskset", "-c", "1", f"{b}/control-plane", "--http-listen", f"127.0.0.1:{http_port}",
                      "--grpc-listen", f"127.0.0.1:{grpc_port}", "--replicas", "3", "--replica-bin", f"{b}/replica",
                      "--announce"],
                     stdout=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="warn"))
    if not cp.stdout.readline().startswith("ready"):
        raise SystemExit("the control plane did not start")
    admin = f"http://127.0.0.1:{http_port}"
    procs.start(["taskset", "-c", "0", f"{b}/data-plane", "--listen", f"127.0.0.1:{dp_port}",
                 "--control-plane-grpc", f"http://127.0.0.1:{grpc_port}",
                 "--control-plane-http", f"127.0.0.1:{http_port}", "--workers", "1"],
                env=dict(os.environ, RUST_LOG="warn"))
    wait_http(f"http://127.0.0.1:{dp_port}/home")
    return [one_round(args, admin, cp.pid, dp_port) for _ in range(args.rounds)]


def write(args, rounds):
    lines = [
        f"Measured {datetime.date.today().isoformat()} with `make bench` (`bench/failover.py --rounds {args.rounds} "
        f"--duration {args.duration}`): wrk (`-t2 -c64`, full speed, `/home` with random request ids) through one "
        "data plane; two seconds in, `kill -9` of the oldest replica; `/rep` polled every 2 ms from the kill.",
        "",
        "| killed | load (req/s) | requests | failed | off the ring | N restored |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        lines.append(f"| {r['killed']} | {r['rps']:.0f} | {r['requests']} | {r['failed']} | "
                     f"{r['off_ring_ms']:.0f} ms | {r['restored_ms']:.0f} ms |")
    write_section("failover", "A replica killed under load", lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="directory with the release binaries")
    parser.add_argument("--rounds", type=int, default=3, help="replicas killed, one per round (default 3)")
    parser.add_argument("--duration", type=int, default=6, help="seconds of load per round (default 6)")
    parser.add_argument("--smoke", action="store_true", help="1 round, no RESULTS.md update")
    args = parser.parse_args()
    if args.smoke:
        args.rounds = 1
    execute(args, run, write)


if __name__ == "__main__":
    main()
