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
