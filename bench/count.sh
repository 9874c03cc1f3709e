#!/usr/bin/env bash
# Instructions per call on each side (manager, child), from two runs of `call-count` under
# callgrind: `bench/count.sh [WIDTH] [CALLS] [ISOLATION]` (child, worker, none, or raw for the raw multiplexer's floor; with worker
# or none, "manager" is the whole process). Deterministic where benchmark times are not,
# so it shows a change of a few percent; it counts work, not waiting or wake-ups.
set -euo pipefail
width=${1:-256}
calls=${2:-20000}
isolation=${3:-child}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p pm-bench --bins >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() {
  mkdir -p "$out/$1"
  # Under valgrind everything runs ~50 times slower and one thread at a time, so the timing
  # that moves a blocking method's calls off the call loop would move every method's: a
  # budget of 1000 s keeps the timing out of the count.
  TITAN_PM_FIRST_POLL_BUDGET_US=${TITAN_PM_FIRST_POLL_BUDGET_US:-1000000000} valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$out/$1/%p" \
    "$target/release/call-count" "$1" "$width" "$isolation" > /dev/null 2> "$out/$1.log"
}
totals() {
  # "manager child" instruction totals: the first process is the manager.
  for f in $(ls "$out/$1" | sort -n); do
    cmd=$(grep '^cmd:' "$out/$1/$f")
    total=$(grep '^summary:' "$out/$1/$f" | awk '{print $2}')
    case "$cmd" in
      *call-count*) echo "manager $total" ;;
      *bench-calculator*|*raw-echo*) echo "child $total" ;;
    esac
  done
}
run "$calls"
run "$((calls * 2))"
python3 - "$calls" <<PY
import sys
calls = int(sys.argv[1])
a = dict(l.split() for l in """$(totals "$calls")""".strip().splitlines())
b = dict(l.split() for l in """$(totals "$((calls * 2))")""".strip().splitlines())
sides = [s for s in ("manager", "child") if s in a]
for side in sides:
    print(f"{side}: {(int(b[side]) - int(a[side])) / calls:.0f} instructions per call")
print(f"all: {sum(int(b[s]) - int(a[s]) for s in sides) / calls:.0f} instructions per call (width $width, $isolation)")
PY
