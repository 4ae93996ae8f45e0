#!/usr/bin/env python3
"""Tongban's benchmark, in one command: `python3 tests/bench/run.py`.

Builds in release, starts every server pinned to one core and the load generator
pinned to the other, and runs the references and Tongban interleaved (A B A B) in the
same run, because the machine is shared and noisy: compare ratios, not absolute times.

  limit    bare hyper + rustls mTLS server answering a constant ~300-byte JSON
  nginx    nginx (Debian's package) as an mTLS reverse proxy, keep-alive upstream
           (its CPU per request counts the nginx worker and the constant upstream)
  full     Tongban: policy, SQLite connector, durable audit, signature
  noaudit  Tongban with the audit layer taken out (only in this harness): the same
           server, config and every other layer

After the closed-loop rounds, open-loop rounds: Tongban and nginx offered the same
fixed rates (25 % and 50 % of nginx's measured keep-alive maximum), latency counted
from each request's due time (loadgen --rate), so queueing shows in p99 and p99.9.

Prints one table and writes it, with the date and machine, to BENCHMARKS.md and
into README.md between the bench markers.
"""

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
SERVER_CORE, CLIENT_CORE = 1, 0


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PG_SERVER = "postgres://postgres@127.0.0.1:5432"


def answers(port, timeout=1.0):
    """Whether something listens on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
        return True
    except OSError:
        return False


def wait_port(port, proc, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early: {proc.args}")
        if answers(port, timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"port {port} never opened for {proc.args}")


def pinned(core, cmd):
    return ["taskset", "-c", str(core)] + cmd


def ensure_packages():
    missing = [p for p, b in (("nginx", "nginx"), ("apache2-utils", "ab")) if not shutil.which(b)
               and not os.path.exists(f"/usr/sbin/{b}")]
    if missing:
        log(f"installing {' '.join(missing)} from Debian's packages")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                       check=True, env=env, stdout=subprocess.DEVNULL)


def build():
    log("building release binaries")
    subprocess.run(["cargo", "build", "--release", "-p", "gateway", "-p", "tongban-bench"],
                   cwd=ROOT, check=True)


class Servers:
    def __init__(self, work):
        self.work = work
        self.procs = []

    def start(self, name, cmd, port, cwd=None, env=None):
        out = open(os.path.join(self.work, f"{name}.log"), "w")
        proc = subprocess.Popen(pinned(SERVER_CORE, cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env)
        self.procs.append(proc)
        wait_port(port, proc)
        return proc

    def stop_one(self, proc):
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


NGINX_CONF = """
worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    upstream constant {{ server 127.0.0.1:{upstream}; keepalive 128; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {pki}/server.pem;
        ssl_certificate_key {pki}/server.key;
        ssl_client_certificate {pki}/ca.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://constant;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Client-Cert-Verified $ssl_client_verify;
        }}
    }}
}}
"""


def child_pid(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else pid


def loadgen(target, pki, mode, conns, seconds, label, proto="h1", warmup=1.0, rate=None):
    """One loadgen run; with `rate`, open loop at that many requests/s."""
    cmd = [os.path.join(BIN, "loadgen"), "--addr", f"127.0.0.1:{target['port']}",
           "--ca", f"{pki}/ca.pem", "--cert", f"{pki}/counter-a.pem", "--key", f"{pki}/counter-a.key",
           "--connections", str(conns), "--duration", str(seconds), "--warmup", str(warmup),
           "--mode", mode, "--proto", proto, "--label", label,
           "--method", target["method"], "--path", target["path"]]
    for pid in target["pids"]:
        cmd += ["--server-pid", str(pid)]
    if target.get("workload"):
        cmd += ["--workload", target["workload"]]
    elif target.get("body"):
        cmd += ["--body", target["body"]]
    for h in target.get("headers", []):
        cmd += ["--header", h]
    if rate:
        # A server that falls behind gets 3 s to serve its backlog; what is left then
        # counts at its latency so far, a lower bound (reported as unsent).
        cmd += ["--rate", str(rate), "--drain", "3"]
    out = subprocess.run(pinned(CLIENT_CORE, cmd), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"loadgen failed: {out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    log(f"  {label:28s} {mode:9s} {proto} c={conns:<4d} {result['rps']:>8.0f} req/s  "
        f"p99 {result['p99_us']:>6d} us  cpu {result['server_cpu_us_per_req']} us/req  "
        f"errors {result['errors']} non2xx {result['non_2xx']}"
        + (f"  open loop at {rate} req/s: p99.9 {result['p999_us']} us, unsent {result['unsent']}" if rate else ""))
    return result


def workload(demo, work, samples, n=20000):
    """What a counter network sends, as JSON lines for loadgen --workload: lookups of
    many subjects (every resident and company of the demo, in a fixed shuffled order),
    with refusals, bad identifiers, misses and bundles mixed in. One request repeated
    would flatter every cache and every index; this does not."""
    import random
    import sqlite3
    rng = random.Random(2026)
    mine = [s for s in samples if s["cert"] == "counter-a"]
    by = lambda path, expect, dataset=None: [s for s in mine if s["path"] == path and s["expect"] == expect
                                             and (dataset is None or s["body"].get("dataset") == dataset)]
    residents = [r[0] for r in sqlite3.connect(os.path.join(demo, "data", "population.db"))
                 .execute("SELECT id_number FROM residents")]
    companies = [r[0] for r in sqlite3.connect(os.path.join(demo, "data", "legal_person.db"))
                 .execute("SELECT credit_code FROM legal_persons")]
    person, company = by("/v1/lookup", 200, "population")[0], by("/v1/lookup", 200, "legal_person")[0]
    refused, bad, missing = by("/v1/lookup", 403), by("/v1/lookup", 400), by("/v1/lookup", 404)
    bundles = by("/v1/bundle", 200)
    lines = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.78:
            base, subject = person, rng.choice(residents)
        elif roll < 0.86:
            base, subject = company, rng.choice(companies)
        elif roll < 0.93:
            base = rng.choice(refused)
            subject = rng.choice(residents) if base["body"].get("dataset") == "population" else base["body"]["subject"]
        elif roll < 0.96:
            base, subject = rng.choice(bad), None
        elif roll < 0.98:
            base, subject = rng.choice(missing), None
        else:
            base, subject = rng.choice(bundles), rng.choice(companies)
        body = dict(base["body"], case_id=f"SB-2026-{i:06d}")
        if subject is not None:
            body["subject"] = subject
        lines.append(json.dumps({"path": base["path"], "body": body}, ensure_ascii=False))
    path = os.path.join(work, "workload.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def ab_crosscheck(target, pki, work, seconds):
    pem = os.path.join(work, "counter-a-ab.pem")
    with open(pem, "w") as f:
        f.write(open(f"{pki}/counter-a.pem").read() + open(f"{pki}/counter-a.key").read())
    body = os.path.join(work, "body.json")
    with open(body, "w") as f:
        f.write(target["body"])
    cmd = ["ab", "-q", "-k", "-c", "64", "-t", str(seconds), "-n", "10000000", "-E", pem,
           "-T", "application/json", "-p", body, "-H", "X-Operator-Id: bench-ab",
           f"https://127.0.0.1:{target['port']}{target['path']}"]
    out = subprocess.run(pinned(CLIENT_CORE, cmd), capture_output=True, text=True)
    rps = None
    for line in out.stdout.splitlines():
        if line.startswith("Requests per second:"):
            rps = float(line.split()[3])
        if line.startswith("Non-2xx responses:"):
            log(f"  ab: {line.strip()}")
    log(f"  ab -k -E (cross-check)            {rps} req/s")
    return rps


def machine():
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Linux {platform.release()}"


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float) and v < 100:
        return f"{v:.1f}{unit}"
    return f"{v:,.0f}{unit}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "n/a"


def extra_figures():
    """Policy-decision and audit verify/write figures from their own benchmarks, when present."""
    lines = []
    for title, cmd in (
        ("policy decision", ["cargo", "run", "--release", "-q", "-p", "policy", "--example", "decision_bench"]),
        ("evidence per answer, receipt vs the first version's signature",
         ["cargo", "run", "--release", "-q", "-p", "gateway", "--example", "evidence_bench"]),
        ("audit verify", ["cargo", "run", "--release", "-q", "-p", "gateway", "--example", "audit_verify_bench"]),
        ("audit write, CPU per record", ["cargo", "run", "--release", "-q", "-p", "gateway", "--example", "audit_write_bench",
                                         "--", "200000"] + (["--pg", PG_SERVER] if answers(5432) else [])),
    ):
        example = cmd[cmd.index("--example") + 1]
        crate = cmd[cmd.index("-p") + 1]
        if not os.path.exists(os.path.join(ROOT, crate, "examples", f"{example}.rs")):
            lines.append(f"- {title}: benchmark not present yet")
            continue
        log(f"running the {title} benchmark")
        try:
            out = subprocess.run(pinned(SERVER_CORE, cmd), cwd=ROOT, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            lines.append(f"- {title}: did not finish within 10 minutes")
            continue
        text = out.stdout.strip() or out.stderr.strip()
        lines.append(f"- {title} (`{' '.join(cmd[1:])}`):\n\n```\n{text}\n```")
        if example == "audit_write_bench":
            lines.append(spread_vs_floor(text))
    return "\n".join(lines)


def spread_vs_floor(text):
    """Issue 15's write target side by side: SQLite writer with spread subjects against
    the flat durable append measured in the same run."""
    cpu = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and row.get("bench") == "audit_write":
            cpu[row.get("way")] = row.get("cpu_us_per_record")
    spread, floor = cpu.get("writer, spread subjects"), cpu.get("flat append (floor)")
    if not spread or not floor:
        return "- audit CPU per record, spread subjects vs floor: n/a"
    return (f"- audit CPU per record, spread subjects vs floor: {spread} µs / {floor} µs = "
            f"{spread / floor:.2f}× (target ≤ 2×)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--rounds", type=int, default=2, help="A B A B rounds")
    ap.add_argument("--open-seconds", type=float, default=4.0, help="measured seconds per open-loop run")
    ap.add_argument("--no-write", action="store_true", help="print only; do not touch BENCHMARKS.md/README.md")
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: one for the servers, one for the load generator")
    ensure_packages()
    build()
    work = tempfile.mkdtemp(prefix="tongban-bench-")
    servers = Servers(work)
    try:
        results = run_all(args, work, servers)
    finally:
        servers.stop()
    report(args, results)


def run_all(args, work, servers):
    demo = os.path.join(work, "demo")
    p_demo, p_demo_ops, p_full, p_ops, p_noaudit, p_noaudit_ops, p_limit, p_up, p_nginx = (free_port() for _ in range(9))
    # `tongban demo` creates the directory and hosts the demo's e-licence department;
    # the gateway measured is `tongban serve` on that directory's config, as deployed
    # (the demo process would add the department's server to its memory).
    servers.start("demo", [os.path.join(BIN, "tongban"), "demo", "--dir", demo, "--listen", f"127.0.0.1:{p_demo}",
                           "--ops-listen", f"127.0.0.1:{p_demo_ops}"], p_demo)

    def serve(node, port, ops_port):
        # The idle round holds 1,000 connections of one identity: above the default
        # per-identity share of 256, which would refuse most of them.
        env = dict(os.environ, TONGBAN_LISTEN=f"127.0.0.1:{port}", TONGBAN_OPS_LISTEN=f"127.0.0.1:{ops_port}",
                   TONGBAN_NODE=node, TONGBAN_LIMITS_MAX_CONNECTIONS_PER_IDENTITY="2048")
        return servers.start(node, [os.path.join(BIN, "tongban"), "serve", "--config",
                                    os.path.join(demo, "tongban.toml")], port, env=env)

    full = serve("bench-full", p_full, p_ops)
    pki = os.path.join(demo, "pki")
    noaudit = servers.start("noaudit", [os.path.join(BIN, "tongban-noaudit"), "--config",
                                        os.path.join(demo, "tongban.toml"), "--listen", f"127.0.0.1:{p_noaudit}",
                                        "--ops-listen", f"127.0.0.1:{p_noaudit_ops}"], p_noaudit)
    limit = servers.start("limit", [os.path.join(BIN, "bare-server"), "--listen", f"127.0.0.1:{p_limit}",
                                    "--cert", f"{pki}/server.pem", "--key", f"{pki}/server.key",
                                    "--client-ca", f"{pki}/ca.pem"], p_limit)
    upstream = servers.start("upstream", [os.path.join(BIN, "bare-server"), "--plain", "--listen", f"127.0.0.1:{p_up}"], p_up)
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=work, upstream=p_up, port=p_nginx, pki=pki))
    nginx = servers.start("nginx", ["nginx", "-c", conf, "-p", work], p_nginx)

    samples = json.load(open(os.path.join(demo, "samples.json")))
    lookup = next(s for s in samples if s["expect"] == 200 and s["cert"] == "counter-a")
    body = json.dumps(lookup["body"])
    mix = workload(demo, work, samples)
    targets = {
        "limit": {"port": p_limit, "pids": [limit.pid], "method": "GET", "path": "/"},
        "nginx": {"port": p_nginx, "pids": [child_pid(nginx.pid), upstream.pid], "method": "GET", "path": "/"},
        "full": {"port": p_full, "pids": [full.pid], "method": "POST", "path": "/v1/lookup", "body": body,
                 "headers": ["X-Operator-Id: bench-001"], "workload": mix},
        "noaudit": {"port": p_noaudit, "pids": [noaudit.pid], "method": "POST", "path": "/v1/lookup", "body": body,
                    "headers": ["X-Operator-Id: bench-001"], "workload": mix},
    }
    res = {k: {"keepalive": [], "handshake": [], "h2": []} for k in targets}
    # Idle memory twice: on the gateway as started, and again after every load round
    # (the heap keeps some of what the bursts grew it to).
    log("idle connections, fresh gateway")
    idle_fresh = loadgen(targets["full"], pki, "idle", 1000, 3, "full idle (fresh)", warmup=2.0)
    for r in range(args.rounds):
        log(f"round {r + 1}/{args.rounds}")
        for name in ("limit", "nginx", "full", "noaudit"):
            res[name]["keepalive"].append(loadgen(targets[name], pki, "keepalive", 64, args.seconds, name))
        for name in ("limit", "nginx", "full"):
            res[name]["handshake"].append(loadgen(targets[name], pki, "handshake", 16, args.seconds, name))
        for name in ("nginx", "full"):
            res[name]["h2"].append(loadgen(targets[name], pki, "keepalive", 64, args.seconds, name, proto="h2"))
    open_loop, rates = open_loop_rounds(args, targets, pki, med(res["nginx"]["keepalive"], "rps"))
    log("idle connections, after the load rounds")
    idle = loadgen(targets["full"], pki, "idle", 1000, 3, "full idle (after load)", warmup=2.0)
    log("cross-check with an external client")
    # ab sends one request over and over: so does loadgen for this comparison.
    single = {k: v for k, v in targets["full"].items() if k != "workload"}
    ours = loadgen(single, pki, "keepalive", 64, args.seconds, "full (loadgen)")
    ab = ab_crosscheck(single, pki, work, args.seconds)
    return {"res": res, "idle": idle, "idle_fresh": idle_fresh, "ab": ab, "ours_vs_ab": ours,
            "open_loop": open_loop, "open_loop_rates": rates}


# Offered loads of the open-loop rounds, as shares of nginx's keep-alive maximum.
OPEN_LOOP_SHARES = {"25 %": 0.25, "50 %": 0.50}


def open_loop_rounds(args, targets, pki, nginx_max):
    """Tongban and nginx offered the same fixed rates, interleaved. Closed-loop p99 at
    64 connections is only 64 ÷ throughput; a fixed schedule shows the queueing."""
    runs = {share: {"full": [], "nginx": []} for share in OPEN_LOOP_SHARES}
    rates = {share: round(nginx_max * f) for share, f in OPEN_LOOP_SHARES.items()} if nginx_max else {}
    if not rates:
        return runs, rates
    for r in range(args.rounds):
        log(f"open loop, round {r + 1}/{args.rounds} (nginx's maximum {nginx_max:,.0f} req/s)")
        for share, rate in rates.items():
            for name in ("nginx", "full"):
                runs[share][name].append(loadgen(targets[name], pki, "keepalive", 64, args.open_seconds,
                                                 f"{name} open {share}", rate=rate))
    return runs, rates


def open_loop_rows(results):
    """Rows of the main table: p50/p99/p99.9 and the rate achieved at each offered load.
    `≥` marks a lower bound: the server fell behind and some requests were never sent."""
    lines = []
    for share, rate in results.get("open_loop_rates", {}).items():
        runs = results["open_loop"][share]
        bound = {n: "≥ " if any(r.get("unsent") for r in runs[n]) else "" for n in runs}
        for key, name in (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9")):
            t, n = med(runs["full"], key), med(runs["nginx"], key)
            # Only Tongban's figure a lower bound: so is the ratio.
            r_bound = bound["full"] if not bound["nginx"] else ""
            lines.append(f"| {name} latency µs at {share} of nginx's max ({rate:,} req/s offered, open loop) | "
                         f"{bound['full']}{fmt(t)} | {bound['nginx']}{fmt(n)} | n/a | {r_bound}{ratio(t, n)} | n/a |")
        t, n = med(runs["full"], "rps"), med(runs["nginx"], "rps")
        lines.append(f"| req/s served at {share} of nginx's max, open loop | {fmt(t)} | {fmt(n)} | n/a | "
                     f"{ratio(t, n)} | n/a |")
    return lines


def report(args, results):
    table, readme_table = tables(results), tables(results, compact=True)
    extras = extra_figures()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"Measured {when} on {machine()}; servers pinned to core {SERVER_CORE}, load generator to core "
              f"{CLIENT_CORE}; {args.rounds} interleaved rounds of {args.seconds:g} s, medians shown. Tongban "
              f"(and Tongban with audit off) answers the counter workload: 20,000 requests in turn — 78 % "
              f"population lookups over the demo's 10,000 residents, 8 % company lookups, 7 % refused (403), "
              f"3 % bad identifiers (400), 2 % misses (404), 2 % bundles; nginx and the limit answer a constant. "
              f"Open loop: {args.rounds} rounds of {args.open_seconds:g} s at fixed offered rates, 64 connections, "
              f"latency from each request's due time; ≥ marks a lower bound (the server fell behind and some "
              f"requests were still unsent 3 s after the schedule ended).")
    print(header)
    print(table)
    print(extras)
    if args.no_write:
        return
    raw = json.dumps(results, indent=1, default=str)
    with open(os.path.join(ROOT, "BENCHMARKS.md"), "w") as f:
        f.write(f"# Benchmarks\n\nRun with `python3 tests/bench/run.py`. {header}\n\n{table}\n\n"
                f"## Own benchmarks\n\n{extras}\n\n## Raw results\n\n```json\n{raw}\n```\n")
    write_readme(header, readme_table)
    log("wrote BENCHMARKS.md and the README table")


def write_readme(header, table):
    """The README's table, between its bench markers."""
    readme = os.path.join(ROOT, "README.md")
    text = open(readme).read()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        _, after = rest.split(end, 1)
        text = f"{before}{start}\n{header}\n\n{table}\n{end}{after}"
        open(readme, "w").write(text)


def tables(results, compact=False):
    """The results as Markdown tables. `compact` (the README's, which must stay one
    page) leaves the open-loop rows per rate and the CPU split to BENCHMARKS.md and keeps
    the open-loop target row."""
    res, idle = results["res"], results["idle"]
    k = {n: res[n]["keepalive"] for n in res}
    h = {n: res[n]["handshake"] for n in res}
    h2 = {n: res[n]["h2"] for n in res}
    rows = [
        ("keep-alive req/s (64 conns, HTTP/1.1)", med(k["full"], "rps"), med(k["nginx"], "rps"), med(k["limit"], "rps"), True),
        ("server CPU µs per request", med(k["full"], "server_cpu_us_per_req"), med(k["nginx"], "server_cpu_us_per_req"),
         med(k["limit"], "server_cpu_us_per_req"), False),
        ("p50 latency µs (64 conns)", med(k["full"], "p50_us"), med(k["nginx"], "p50_us"), med(k["limit"], "p50_us"), False),
        ("p99 latency µs (64 conns)", med(k["full"], "p99_us"), med(k["nginx"], "p99_us"), med(k["limit"], "p99_us"), False),
        ("keep-alive req/s (64 conns, h2)", med(h2["full"], "rps"), med(h2["nginx"], "rps"), None, True),
        ("new mTLS connections/s (16 conns)", med(h["full"], "rps"), med(h["nginx"], "rps"), med(h["limit"], "rps"), True),
        ("server CPU µs per new connection", med(h["full"], "server_cpu_us_per_req"), med(h["nginx"], "server_cpu_us_per_req"),
         med(h["limit"], "server_cpu_us_per_req"), False),
    ]
    lines = ["| figure | Tongban (counter workload) | nginx mTLS proxy | bare hyper+rustls (limit) | Tongban / nginx | Tongban / limit |",
             "|---|---|---|---|---|---|"]
    for title, t, n, l, _ in rows:
        lines.append(f"| {title} | {fmt(t)} | {fmt(n)} | {fmt(l)} | {ratio(t, n)} | {ratio(t, l)} |")
    if not compact:
        lines += open_loop_rows(results)
    full_rps, noaudit_rps = med(k["full"], "rps"), med(k["noaudit"], "rps")
    lines.append("")
    lines.append("| figure | value | target |")
    lines.append("|---|---|---|")
    lines.append(f"| durable audit: throughput with audit / audit off | {fmt(full_rps)} / {fmt(noaudit_rps)} = "
                 f"{ratio(full_rps, noaudit_rps)} | ≥ 0.90× |")
    full_cpu, noaudit_cpu = med(k["full"], "server_cpu_us_per_req"), med(k["noaudit"], "server_cpu_us_per_req")
    if not compact:
        lines.append(f"| server CPU µs per request, audit / audit off | {fmt(full_cpu)} / {fmt(noaudit_cpu)} | — |")
    lines.append(f"| full lookup throughput vs nginx | {ratio(full_rps, med(k['nginx'], 'rps'))} | ≥ 1.0× (stretch 1.5×) |")
    lines.append(f"| new mTLS connections/s vs nginx | {ratio(med(h['full'], 'rps'), med(h['nginx'], 'rps'))} | ≥ 1.5× |")
    lines.append(f"| p99 latency at 64 connections | {fmt(med(k['full'], 'p99_us'))} µs | < 5,000 µs |")
    half = results.get("open_loop", {}).get("50 %")
    if half:
        t, n = med(half["full"], "p99_us"), med(half["nginx"], "p99_us")
        lines.append(f"| p99 at 50 % of nginx's max, open loop, Tongban / nginx | {fmt(t)} / {fmt(n)} µs = "
                     f"{ratio(t, n)} | ≤ 2× |")
    for when, run in (("fresh gateway", results["idle_fresh"]), ("after the load rounds", idle)):
        rss = run.get("server_rss_kib")
        # Every connection held its first answer, refused or not (the mix's own
        # refusals keep their connection): errors are the connections not held.
        held = run["ok"] + run["non_2xx"]
        lines.append(f"| RSS holding 1,000 idle mTLS connections, {when} | {fmt(rss / 1024 if rss else None)} MiB "
                     f"({held} connections held, {run['errors']} failed) | ≤ 64 MiB |")
    ab, ours = results["ab"], results["ours_vs_ab"]["rps"]
    lines.append(f"| cross-check: loadgen vs `ab -k -E` on the full lookup | {fmt(ours)} vs {fmt(ab)} req/s "
                 f"({ratio(ours, ab)}) | agree within noise |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
