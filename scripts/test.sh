#!/usr/bin/env bash
# The test suite, as CI runs it: installs what it needs on a fresh machine,
# builds once in release mode, then runs every suite against real processes.
#
#   scripts/test.sh            everything
#   SKIP_VM=1 scripts/test.sh  without the kTLS VM test
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
step() { printf '\n=== %s (%ss)\n' "$*" "$SECONDS"; }

step "system packages"
scripts/peers.sh --test

step "python packages"
python3 -m pip install --quiet --disable-pip-version-check -r tests/integration/requirements.txt

step "build (release)"
cargo build --release --workspace --all-targets

step "unit and state-machine tests (storage, wire, dataplane lib)"
cargo test --release --workspace --lib --bins
cargo test --release -p storage --tests
cargo test --release -p wire --tests

step "replication integration tests (real processes)"
# crash and faults run in the reliability step below.
cargo test --release -p dataplane --test realtime --test fullsync --test tls -- --test-threads=1

step "S3 integration tests (boto3, aws cli, raw sockets)"
DATAPLANE_BIN="$ROOT/target/release/dataplane" python3 -m pytest tests/integration -q -p no:cacheprovider

step "reliability suites (crashes, link faults, absent sink, full disks, fuzzing)"
scripts/reliability.sh --short

step "demo"
target/release/dataplane demo --objects 60 --base-port 17080

if [ "${SKIP_VM:-0}" != "1" ] && [ -x scripts/ktls-vm-test.sh ]; then
  step "kTLS in a real kernel (qemu)"
  scripts/ktls-vm-test.sh
fi

step "all tests passed"
