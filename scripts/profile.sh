#!/usr/bin/env bash
# Profiles one benchmark scenario (quick mode): perf record -g over the bench
# process and the dataplane nodes it starts, a flame graph (SVG, drawn by
# `bench flamegraph` with inferno), the top functions, and a perf stat
# summary. Output under bench-results/profile-SCENARIO-TIME/.
#
#   scripts/profile.sh SCENARIO [bench args...]
#   CALLGRAPH=dwarf scripts/profile.sh realtime-bulk   # DWARF unwinding
#   FREQ=499 scripts/profile.sh lag                     # samples/s per CPU
#
# -g walks frame pointers, which Rust release code mostly omits: stacks are
# then short but self time per function is right. CALLGRAPH=dwarf unwinds
# with the debug info instead (full stacks, larger perf.data, slower).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
  echo "usage: scripts/profile.sh SCENARIO [bench args...]" >&2
  exit 2
fi
scenario=$1
shift
scripts/peers.sh
if ! command -v perf >/dev/null; then
  echo "perf is not installed (Debian package linux-perf); scripts/peers.sh installs it" >&2
  exit 1
fi
if [ ! -x target/release/bench ] || [ ! -x target/release/dataplane ]; then
  flock /tmp/cargo.lock cargo build --release -p bench -p dataplane
fi
out="bench-results/profile-$scenario-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$out"
freq=${FREQ:-249}
case "${CALLGRAPH:-fp}" in
  dwarf) cg=(--call-graph dwarf,16384) ;;
  *) cg=(-g) ;;
esac

# Hardware counters: `perf stat -e instructions true` says <not supported>
# (or fails) where the machine (a VM, usually) does not expose them.
hw=yes
probe=$(perf stat -e instructions true 2>&1) || hw=no
if grep -q -e "<not supported>" -e "<not counted>" <<<"$probe"; then hw=no; fi
if [ "$hw" = yes ]; then
  event=(-e cycles)
  echo "hardware counters: available"
else
  event=(-e cpu-clock)
  echo "hardware counters: NOT AVAILABLE on this machine (perf stat -e instructions true: $(grep -o -m1 -e '<not supported>' -e '<not counted>' <<<"$probe" || echo failed))."
  echo "  Sampling uses the cpu-clock software timer; perf stat shows software counters only (no instructions, cycles, IPC, cache misses)."
fi

echo "== perf record ${cg[*]} ${event[*]} -F $freq: target/release/bench $scenario --quick $*"
perf record "${event[@]}" -F "$freq" "${cg[@]}" -o "$out/perf.data" -- \
  target/release/bench "$scenario" --quick --out "$out/figures.jsonl" "$@" 2>&1 | tee "$out/bench.log"

echo "== perf script | bench flamegraph"
perf script -i "$out/perf.data" >"$out/perf.script" 2>/dev/null
target/release/bench flamegraph "$out/perf.script" "$out/flamegraph.svg" "dataplane bench $scenario --quick ($(date -u +%F))"

echo "== where the time goes (self time; anchors such as iperf3, fio, redis-server, rsync, openssl run in the same process tree)"
perf report -i "$out/perf.data" --stdio --no-children -g none --sort comm --percent-limit 0.5 2>/dev/null \
  | grep -v '^#' | grep '%' | head -15 >"$out/by-thread.txt" || true
perf report -i "$out/perf.data" --stdio --no-children -g none --sort comm,dso,sym --percent-limit 0.3 2>/dev/null \
  | grep -v '^#' | grep '%' | head -80 >"$out/top.txt" || true
# The nodes' threads only: their executors are named core-N-M.
grep -E '^ +[0-9.]+% +core-' "$out/top.txt" | head -30 >"$out/top-dataplane.txt" || true
echo "-- by thread (comm):"
cat "$out/by-thread.txt"
echo "-- top functions of the dataplane executors (core-*):"
cat "$out/top-dataplane.txt"

echo "== perf stat (a second run of the scenario)"
if [ "$hw" = yes ]; then
  stat_events=(-d)
else
  stat_events=(-e task-clock,context-switches,cpu-migrations,page-faults)
fi
perf stat "${stat_events[@]}" -o "$out/perf-stat.txt" -- \
  target/release/bench "$scenario" --quick "$@" >/dev/null 2>&1 || true
if [ "$hw" = no ]; then
  sed -i '1i # Hardware counters are not available on this machine (perf stat -e instructions true: <not supported>): software counters only.' "$out/perf-stat.txt"
fi
cat "$out/perf-stat.txt"
rm -f "$out/perf.script"
echo
echo "wrote $out/: flamegraph.svg, flamegraph.folded, by-thread.txt, top.txt, top-dataplane.txt, perf-stat.txt, perf.data, bench.log, figures.jsonl"
