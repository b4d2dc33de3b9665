#!/usr/bin/env bash
# The reliability and security suites (docs/reliability.md).
#
#   scripts/reliability.sh --short   what CI runs: crash suite with 5 kills,
#                                    link faults, absent sink, full disks,
#                                    hostile frames, admin access, and every
#                                    fuzz target for FUZZ_SECONDS (default 20)
#   scripts/reliability.sh --long    the same with 100 kills and 300 s per
#                                    fuzz target (about 15 minutes more)
#
# Replays: CRASH_SEED=… (crash suite), FAULT_SEED=… (link faults),
# FUZZ_SEED=… (fuzz); CRASH_KEEP=1 / FAULT_KEEP=1 keep the clusters'
# directories (node logs) for a look afterwards. The seeds in use are
# printed at the start of each suite.
#
# Needs root (the full-disk tests mount loop-device filesystems) and the
# release build (`cargo build --release --workspace --all-targets`).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:---short}
case "$mode" in
  --short) kills=${CRASH_KILLS:-5}; fuzz=${FUZZ_SECONDS:-20} ;;
  --long) kills=${CRASH_KILLS:-100}; fuzz=${FUZZ_SECONDS:-300} ;;
  *) echo "usage: scripts/reliability.sh [--short|--long]" >&2; exit 2 ;;
esac
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

step "crash suite: $kills SIGKILLs of source and sink"
CRASH_KILLS=$kills cargo test --release -p dataplane --test crash -- --test-threads=1 --nocapture

step "link faults, absent sink, full disks, hostile frames, admin access"
cargo test --release -p dataplane --test faults -- --test-threads=1 --nocapture

step "fuzz: frame, record, http, sigv4 for ${fuzz}s each"
FUZZ_SECONDS=$fuzz cargo test --release -p dataplane-fuzz --test fuzz -- --test-threads=1 --nocapture

step "reliability suites passed"
