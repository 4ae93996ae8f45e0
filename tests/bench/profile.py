#!/usr/bin/env python3
"""Where a full lookup's CPU goes: `python3 tests/bench/profile.py [--seconds 10]`.

Starts Tongban the way run.py does (release build, `tongban demo` for the directory,
then `tongban serve` on its config, pinned to one core), drives it with the counter
workload from loadgen on the other core, records the gateway with
`perf record --call-graph dwarf`, and prints the CPU by layer: share of the samples
and µs per request (share × the server CPU per request loadgen measured from /proc).

Debug symbols: the workspace's release profile already keeps `debug = 1` (line
tables and symbols), which is all perf needs to name functions and unwind with DWARF;
no separate profile is built. perf script runs with --no-inline, so a function
inlined into another counts in the one it was inlined into.

How a sample is put in a layer (LAYERS below, matched on the demangled function):
  - a sample in the allocator (malloc, free, …) or the kernel counts there, whoever
    called it: both are costs to cut by calling less;
  - otherwise the stack is walked from the leaf towards the root and the first frame
    of a *specific* layer wins (rustls, hyper, tracing, serde_json's deserializer,
    policy, connectors, audit, the gateway's own modules…);
  - crates any layer may call (ring, sqlite3, sqlx/rusqlite, sha2, itoa, tokio, tower,
    memcpy) are *generic*: they only decide when no specific frame is above them, so
    ring's SHA-256 counts as evidence under audit::chain and as TLS under rustls, and
    a SQLite page read counts as audit under the audit writer and as source read
    under the connector;
  - what matches nothing is "other".
"""

import argparse
import collections
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402  (run.py beside this file: its servers, loadgen and workload)

PERF = shutil.which("perf") or "/usr/bin/perf"

# (layer, specific?, pattern matched at the start of the demangled name, after any
# leading `<`, `&` and `mut `: the crate and module a function belongs to).
# Order matters: the first pattern that matches names the frame's layer.
LAYERS = [
    # The gateway's own modules, by what they do.
    ("meta/tracing", True, r"gateway::(http::meta|http::metrics_layer|telemetry|metrics)\b"),
    ("parse", True, r"gateway::(http::parse|http::body|requests)\b"),
    ("JSON rendering", True, r"gateway::http::render\b"),
    ("policy", True, r"gateway::(http::authorize|agreements|policy_sync)\b"),
    ("source read", True, r"gateway::(http::fetch|sources)\b"),
    ("audit", True, r"gateway::(http::audit_layer|audit_config)\b"),
    ("TLS", True, r"gateway::http::identity\b"),
    # serde's derived impls carry the type's path, so look for the trait first.
    ("parse", True, r"serde_json::(de|read)::|serde(_core)?::de::|.*serde(_core)?::de::(Deserialize for|Visitor)"),
    ("JSON rendering", True, r"serde_json::(ser|value::ser)::|serde(_core)?::ser::|"
                             r".*serde(_core)?::ser::Serialize for|audit::canonical\b"),
    # Evidence: hash chain, transparency log, signatures, receipts.
    ("evidence", True, r"audit::(chain|tlog|signing|receipt|answer|batch|batch_note|checkpoint|frontier|"
                       r"tree_store|witness|cosignatures)\b|ed25519_dalek::"),
    ("audit", True, r"audit::|rusqlite::.*audit"),
    ("policy", True, r"policy::|casbin::|rhai::"),
    ("source read", True, r"connectors::"),
    ("TLS", True, r"rustls::|tokio_rustls::|webpki::|rustls_pki_types::|certs::"),
    ("HTTP", True, r"hyper::|hyper_util::|h2::|http::|httparse::|http_body|http_body_util::"),
    ("meta/tracing", True, r"tracing::|tracing_core::|tracing_subscriber::|tracing_opentelemetry::|"
                           r"opentelemetry\w*::|prometheus::|metrics::"),
    ("gateway (routing, glue)", True, r"gateway::"),
    # The runtime: a leaf here is scheduling and readiness, not its caller's work.
    ("async runtime (tokio)", True, r"tokio::|mio::"),
    # Generic: callers decide.
    ("evidence", False, r"sha2::|curve25519_dalek::|ed25519::"),
    ("TLS", False, r"ring::|ring_core_|(aes_hw|aes_nohw|vpaes|gcm_|GFp|ChaCha20|chacha20|poly1305|x25519|"
                   r"sha256_block|sha512_block|bn_|fiat_|p256_|ecp_nistz256|CRYPTO_)"),
    ("source read", False, r"sqlx\w*::|rusqlite::|libsqlite3_sys::|sqlite3|btree|pager|pcache|vdbe|unix[A-Z]|"
                           r"wal[A-Z]|moveTo|getAndInitPage|accessPayload"),
    ("JSON rendering", False, r"itoa::|ryu::|serde_json::"),
    ("async runtime (tokio)", False, r"futures\w*::|parking_lot|crossbeam|tower::|epoll|__GI_epoll"),
]
LAYERS = [(name, specific, re.compile(pattern)) for name, specific, pattern in LAYERS]
ALLOCATOR = re.compile(r"^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free\w*|_int_realloc|"
                       r"malloc_consolidate|unlink_chunk|sysmalloc|tcache_\w+|__libc_(malloc|free|realloc|calloc)|"
                       r"__rust_(alloc|dealloc|realloc|alloc_zeroed)|__rdl_\w+|__rg_\w+|"
                       r"alloc::alloc::|"
                       # mimalloc, the binaries' allocator.
                       r"_?mi_\w+|<mimalloc::MiMalloc as)")
ORDER = ["TLS", "HTTP", "meta/tracing", "parse", "policy", "source read", "JSON rendering", "audit",
         "evidence", "gateway (routing, glue)", "async runtime (tokio)", "allocator", "kernel", "other"]


def bare(sym):
    """The name with what comes before the crate path removed: `<&mut serde_json::…`;
    a drop is named by what it drops (`core::ptr::drop_in_place<hyper::…>`)."""
    sym = re.sub(r"^core::ptr::drop_in_place<", "", sym)
    return re.sub(r"^(<|&|mut |dyn |\s)+", "", sym)


def classify_frame(sym, dso):
    """(layer, specific) of one frame, or None when it says nothing."""
    name = bare(sym)
    if dso.startswith("[kernel") or dso == "[unknown]" and not sym:
        return ("kernel", True)
    for layer, specific, pattern in LAYERS:
        if pattern.match(name):
            return (layer, specific)
    return None


def classify_sample(frames):
    """The layer a sample counts in; frames are (symbol, dso) from the leaf up."""
    if not frames:
        return "other"
    leaf_sym, leaf_dso = frames[0]
    if leaf_dso.startswith("[kernel"):
        return "kernel"
    if ALLOCATOR.match(bare(leaf_sym)):
        return "allocator"
    generic = None
    for sym, dso in frames:
        found = classify_frame(sym, dso)
        if found is None:
            continue
        layer, specific = found
        if layer == "kernel":
            continue  # user frames above a kernel entry are what we want
        if specific:
            return layer
        generic = generic or layer
    return generic or "other"


def parse_perf_script(text):
    """Yields each sample's frames, leaf first, from `perf script -F ip,sym,dso`."""
    frames = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            if frames:
                yield frames
            frames = []
            continue
        # "55d0c0a1b2c3 rustls::conn::…::read_tls+0x53 (/path/tongban)"
        m = re.match(r"^[0-9a-f]+\s+(.*?)\s+\((.*)\)$", line)
        if not m:
            continue
        sym = re.sub(r"\+0x[0-9a-f]+$", "", m.group(1))
        frames.append((sym, m.group(2)))
    if frames:
        yield frames


def start_gateway(work, servers):
    """`tongban demo` for the directory (and its e-licence department), then the gateway
    measured: `tongban serve` on that config, as run.py does."""
    demo = os.path.join(work, "demo")
    p_demo, p_demo_ops, p_full, p_ops = (bench.free_port() for _ in range(4))
    servers.start("demo", [os.path.join(bench.BIN, "tongban"), "demo", "--dir", demo,
                           "--listen", f"127.0.0.1:{p_demo}", "--ops-listen", f"127.0.0.1:{p_demo_ops}"], p_demo)
    env = dict(os.environ, TONGBAN_LISTEN=f"127.0.0.1:{p_full}", TONGBAN_OPS_LISTEN=f"127.0.0.1:{p_ops}",
               TONGBAN_NODE="bench-profile")
    full = servers.start("bench-profile", [os.path.join(bench.BIN, "tongban"), "serve", "--config",
                                           os.path.join(demo, "tongban.toml")], p_full, env=env)
    return demo, p_full, full


def profile(args, work, servers):
    demo, port, full = start_gateway(work, servers)
    pki = os.path.join(demo, "pki")
    samples = json.load(open(os.path.join(demo, "samples.json")))
    lookup = next(s for s in samples if s["expect"] == 200 and s["cert"] == "counter-a")
    target = {"port": port, "pids": [full.pid], "method": "POST", "path": "/v1/lookup",
              "body": json.dumps(lookup["body"]), "headers": ["X-Operator-Id: bench-001"],
              "workload": bench.workload(demo, work, samples)}
    data = os.path.join(work, "perf.data")
    bench.log(f"perf record for {args.seconds + 1:g} s while loadgen runs")
    # perf on the load generator's core, so it does not take the gateway's.
    perf = subprocess.Popen(bench.pinned(bench.CLIENT_CORE, [
        PERF, "record", "-q", "-F", str(args.frequency), "--call-graph", "dwarf,32768", "-p", str(full.pid),
        "-o", data, "--", "sleep", str(args.seconds + 1)]), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)  # perf attaches before the measured load begins
    result = bench.loadgen(target, pki, "keepalive", 64, args.seconds, "full (profiled)", warmup=0.5,
                           proto=args.proto)
    _, err = perf.communicate(timeout=120)
    if perf.returncode != 0:
        raise SystemExit(f"perf record failed: {err.decode(errors='replace')}")
    bench.log("perf script (DWARF unwinding; takes a while)")
    script = subprocess.run([PERF, "script", "-i", data, "--no-inline", "-F", "ip,sym,dso"],
                            capture_output=True, text=True, errors="replace")
    if script.returncode != 0:
        raise SystemExit(f"perf script failed: {script.stderr}")
    return result, script.stdout


def tabulate(result, script, seconds, proto="h1"):
    by_layer = collections.Counter()
    by_symbol = collections.defaultdict(collections.Counter)
    total = 0
    for frames in parse_perf_script(script):
        layer = classify_sample(frames)
        by_layer[layer] += 1
        by_symbol[layer][frames[0][0] or "[unknown]"] += 1
        total += 1
    if total == 0:
        raise SystemExit("perf recorded no samples")
    cpu = result.get("server_cpu_us_per_req")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"Measured {when} on {bench.machine()} with `python3 tests/bench/profile.py --seconds {seconds:g}{' --proto h2' if proto == 'h2' else ''}`: "
             f"`tongban serve` on the demo config pinned to core {bench.SERVER_CORE}, loadgen (counter workload, "
             f"64 keep-alive {'HTTP/2' if proto == 'h2' else 'HTTP/1.1'} connections) on core {bench.CLIENT_CORE}; {result['requests']:,} requests "
             f"in {result['seconds']} s ({result['rps']:,.0f} req/s, {result['non_2xx']:,} non-2xx as the mix "
             f"intends, {result['errors']} errors), server CPU {cpu} µs per request, {total:,} samples of "
             f"`perf record --call-graph dwarf`.",
             "",
             "| layer | share of CPU | µs per request |",
             "|---|---:|---:|"]
    for layer in ORDER:
        n = by_layer.get(layer, 0)
        share = n / total
        us = f"{share * cpu:.1f}" if cpu else "n/a"
        lines.append(f"| {layer} | {share * 100:.1f} % | {us} |")
    lines.append(f"| total | 100 % | {cpu if cpu else 'n/a'} |")
    table = "\n".join(lines)
    detail = ["", "Top functions (self) in each layer:"]
    for layer in ORDER:
        if not by_symbol.get(layer):
            continue
        tops = ", ".join(f"`{sym[:70]}` {n / total * 100:.1f} %" for sym, n in by_symbol[layer].most_common(4))
        detail.append(f"- {layer}: {tops}")
    return table, "\n".join(detail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds of load under perf")
    ap.add_argument("--frequency", type=int, default=499, help="perf samples per second")
    ap.add_argument("--proto", choices=["h1", "h2"], default="h1",
                    help="HTTP/1.1 or HTTP/2 connections (one request at a time on each)")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (perf.data, logs)")
    args = ap.parse_args()
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: one for the gateway, one for the load generator and perf")
    if not os.path.exists(PERF):
        raise SystemExit("needs perf (Debian: linux-perf)")
    if not args.no_build:
        bench.build()
    work = tempfile.mkdtemp(prefix="tongban-profile-")
    servers = bench.Servers(work)
    try:
        result, script = profile(args, work, servers)
    finally:
        servers.stop()
    table, detail = tabulate(result, script, args.seconds, args.proto)
    print(table)
    print(detail)
    if args.keep:
        bench.log(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
