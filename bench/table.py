#!/usr/bin/env python3
"""Prints the table of docs/PERFORMANCE.md from one run of `cargo bench -p pm-bench`.

Usage: python3 bench/table.py [TARGET_DIR]   (default: $CARGO_TARGET_DIR, else ./target)

Reads criterion's medians from TARGET_DIR/criterion/<group>/<case>/new/estimates.json and
the idle child's memory from TARGET_DIR/criterion/idle-child-rss-mib.txt.
"""

import json
import os
import sys


def target_dir():
    if len(sys.argv) > 1:
        return sys.argv[1]
    return os.environ.get("CARGO_TARGET_DIR", "target")


ROOT = os.path.join(target_dir(), "criterion")


def median_ns(case):
    path = os.path.join(ROOT, case, "new", "estimates.json")
    try:
        with open(path) as f:
            return json.load(f)["median"]["point_estimate"]
    except (OSError, KeyError, ValueError):
        return None


def us(ns):
    return "–" if ns is None else f"{ns / 1000:.2f} µs"


def ms(ns):
    return "–" if ns is None else f"{ns / 1e6:.2f} ms"


def per_s(ns):
    return "–" if ns is None else f"{1e9 / ns / 1e6:.3f} M/s"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def fmt(r, digits=2):
    return "–" if r is None else f"{r:.{digits}f}×"


def verdict(ok):
    return "–" if ok is None else ("met" if ok else "missed")


rows = []


def floor_of(cases):
    """The lowest of several measurements of the same floor."""
    found = [v for v in (median_ns(c) for c in cases) if v is not None]
    return min(found) if found else None


def latency(label, ours, floor, peer=None, target="", check=None):
    o = median_ns(ours)
    f = floor_of(floor) if isinstance(floor, tuple) else median_ns(floor)
    p = median_ns(peer) if peer else None
    r, rp = ratio(o, f), ratio(o, p)
    ok = None if check is None or r is None else check(o, f, p)
    rows.append([label, us(o), us(f), fmt(r), (us(p) + f" ({fmt(rp)})") if peer else "–", target, verdict(ok)])


def throughput(label, ours, floor, peer, target, check):
    o, f, p = median_ns(ours), median_ns(floor), median_ns(peer)
    share = ratio(f, o)  # ours' rate / floor's rate
    ahead = ratio(p, o)  # ours' rate / peer's rate
    ok = None if share is None or ahead is None else check(share, ahead)
    rows.append([label, per_s(o), per_s(f), f"{share * 100:.0f}% of it" if share else "–",
                 (per_s(p) + f" (ours {fmt(ahead)})") if p else "–", target, verdict(ok)])


# Both are AF_UNIX stream ping-pongs with the same peer; criterion measures them one after the
# other, and the first case of a run sometimes settles into a slower schedule, so the floor is
# the lower of the two.
latency("Child/Ipc sequential `add`", "sequential/child_ipc",
        ("sequential/raw_socketpair", "sequential/raw_unix"),
        "sequential/tarpc_unix", "≤ 1.3× raw, ≤ 0.7× tarpc",
        lambda o, f, p: o <= 1.3 * f and p is not None and o <= 0.7 * p)
latency("Child/Unix sequential `add`", "sequential/child_unix", "sequential/raw_unix")
latency("Child/Tcp sequential `add`", "sequential/child_tcp", "sequential/raw_tcp")
latency("Child/Http (WebSocket) sequential `add`", "sequential/child_http", "sequential/raw_tcp")
latency("Worker `add`", "sequential/worker_channel", "sequential/raw_cross_thread", None,
        "≤ 2×", lambda o, f, p: o <= 2 * f)
latency("Worker/Tcp `add`", "sequential/worker_tcp", "sequential/raw_tcp")
latency("None `add`", "sequential/none_inline", "sequential/raw_in_runtime", None,
        "≤ 1 µs", lambda o, f, p: o <= 1000)
throughput("64 calls in flight on one handle", "in_flight/child_ipc_64", "in_flight/raw_mux_64",
           "in_flight/tarpc_unix_64", "", lambda s, a: None)
throughput("256 calls in flight on one handle", "in_flight/child_ipc_256",
           "in_flight/raw_mux_256", "in_flight/tarpc_unix_256", "≥ 50% of raw, ≥ 2.5× tarpc",
           lambda s, a: s >= 0.5 and a >= 2.5)
o, f = median_ns("payload/child_ipc_echo_1mib"), median_ns("payload/raw_echo_1mib")
share = ratio(f, o)
rows.append(["1 MiB argument echoed back", ms(o), ms(f),
             f"{share * 100:.0f}% of its bandwidth" if share else "–", "–", "≥ 50% of raw",
             verdict(None if share is None else share >= 0.5)])
o, f = median_ns("spawn/child_spawn_first_reply"), median_ns("spawn/raw_spawn_first_echo")
rows.append(["spawn to first reply", ms(o), ms(f),
             "–" if o is None or f is None else f"+{(o - f) / 1e6:.2f} ms", "–", "≤ raw + 1 ms",
             verdict(None if o is None or f is None else o - f <= 1e6)])
try:
    with open(os.path.join(ROOT, "idle-child-rss-mib.txt")) as f:
        rss = float(f.read().strip())
    rows.append(["idle Child RSS", f"{rss:.2f} MiB", "–", "–", "–", "≤ 5 MiB", verdict(rss <= 5)])
except (OSError, ValueError):
    pass

header = ["case", "ours", "floor", "ours / floor", "tarpc", "target", ""]
print("| " + " | ".join(header) + " |")
print("|" + "---|" * len(header))
for row in rows:
    print("| " + " | ".join(row) + " |")
