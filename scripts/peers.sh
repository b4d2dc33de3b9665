#!/usr/bin/env bash
# Installs the tools the tests and the benchmarks compare with, from Debian's
# packages, when they are missing. `--test` installs only what the tests need.
set -euo pipefail
want=(rsync openssl python3-pip rclone)
if [ "${1:-}" != "--test" ]; then
  want+=(fio iperf3 redis-server linux-perf)
fi
# The kTLS VM test boots Debian's kernel under qemu with a busybox initramfs.
want+=(qemu-system-x86 linux-image-amd64 busybox-static cpio kmod)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Garage, the S3 peer of `bench s3-put-get` (benchmarks only, never CI): built
# from crates.io once (about 12 minutes on two cores) into a cache outside
# target/. GARAGE_VERSION pins it; bench finds it there or at $GARAGE_BIN.
if [ "${1:-}" != "--test" ]; then
  GARAGE_VERSION=${GARAGE_VERSION:-2.5.0}
  peers="${HOME:-/root}/.cache/dataplane-peers"
  if [ ! -x "$peers/bin/garage" ] || ! "$peers/bin/garage" --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    echo "installing garage $GARAGE_VERSION into $peers (about 12 minutes)"
    cargo install garage --version "$GARAGE_VERSION" --locked --root "$peers"
  fi
fi
