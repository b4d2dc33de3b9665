#!/usr/bin/env bash
# kTLS in a real kernel. This machine's kernel has no TLS ULP, so the test
# boots Debian's linux-image-amd64 (whose tls.ko loads) under qemu (TCG, no
# KVM needed) with an initramfs holding busybox, the kernel modules, the
# dataplane binary and the libraries it links. Inside the VM two TLS
# clusters replicate objects in realtime and by fullsync; the test passes
# only if both ends of every replication connection ran in `ktls` mode and
# the sink's data is byte-exact. A second run with kTLS off gives a
# (TCG-slowed, indicative) rustls vs kTLS throughput comparison.
#
#   scripts/ktls-vm-test.sh            build if needed, boot, check
#   KEEP=1 scripts/ktls-vm-test.sh     keep the work directory
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN=${DATAPLANE_BIN:-$ROOT/target/release/dataplane}
TIMEOUT=${VM_TIMEOUT:-1200}

scripts/peers.sh --test
[ -x "$BIN" ] || cargo build --release -p dataplane

KVER=$(ls /lib/modules | grep -E -- '-amd64$' | sort -V | tail -1)
KERNEL=/boot/vmlinuz-$KVER
[ -f "$KERNEL" ] || { echo "no Debian kernel image found (install linux-image-amd64)"; exit 1; }
WORK=$(mktemp -d /tmp/ktls-vm.XXXXXX)
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"' EXIT
echo "kTLS VM test: kernel $KVER, work dir $WORK"

# Certificates: one CA, one certificate per cluster.
C=$WORK/certs
mkdir -p "$C"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/ca.key" -out "$C/ca.pem" \
  -days 30 -subj /CN=ktls-test-ca 2>/dev/null
for n in dc1 dc2; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$C/$n.key" -out "$C/$n.csr" \
    -subj "/CN=$n.example.com" 2>/dev/null
  printf 'subjectAltName=DNS:%s.example.com\n' "$n" > "$C/$n.ext"
  openssl x509 -req -in "$C/$n.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial -out "$C/$n.crt" \
    -days 30 -extfile "$C/$n.ext" 2>/dev/null
done

# The initramfs.
R=$WORK/root
mkdir -p "$R"/{bin,sbin,proc,sys,dev,tmp,mnt,certs}
cp /bin/busybox "$R/bin/busybox"
for a in sh mount umount insmod modprobe ip cat echo poweroff sleep uname ls mkdir dmesg grep; do
  ln -sf busybox "$R/bin/$a"
done
ln -sf ../bin/busybox "$R/sbin/modprobe"
cp "$BIN" "$R/bin/dataplane"
for lib in $(ldd "$BIN" | grep -o '/[^ ]*'); do
  mkdir -p "$R$(dirname "$lib")"
  cp -L "$lib" "$R$lib"
done
cp "$C"/{ca.pem,dc1.crt,dc1.key,dc2.crt,dc2.key} "$R/certs/"

# Kernel modules: the disk (virtio, ext4), the AEAD ciphers kTLS uses, tls.
: > "$R/modules.order"
for m in virtio_pci virtio_blk ext4 gf128mul ghash-generic ghash-clmulni-intel ctr aesni-intel gcm \
         chacha20poly1305 tls; do
  for line in $(modprobe -S "$KVER" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}'); do
    rel=${line#/lib/modules/$KVER/}
    if ! grep -qx "$rel" "$R/modules.order"; then
      mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
      cp "$line" "$R/lib/modules/$KVER/$rel"
      echo "$rel" >> "$R/modules.order"
    fi
  done
done

cat > "$R/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
for m in \$(cat /modules.order); do insmod /lib/modules/$KVER/\$m 2>/dev/null; done
ip link set lo up
mount -t ext4 /dev/vda /mnt || { echo "KTLS-VM-TEST: FAIL (no disk)"; poweroff -f; }
echo "VM kernel \$(uname -r); TLS ULP available: \$(cat /proc/sys/net/ipv4/tcp_available_ulp)"
cd /tmp
if /bin/dataplane demo --objects 30 --max-size 1200000 --tls-dir /certs --fullsync --drain-mib 24 \
     --expect-mode ktls --data-root /mnt --base-port 18080; then
  echo "KTLS-VM-TEST: PASS"
else
  echo "KTLS-VM-TEST: FAIL"
fi
echo "--- the same with kTLS off (userspace rustls), for comparison"
/bin/dataplane demo --objects 10 --max-size 1200000 --tls-dir /certs --no-ktls --drain-mib 24 \
     --expect-mode rustls --data-root /mnt --base-port 18180 || echo "rustls comparison run failed"
poweroff -f
EOF
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$WORK/initrd.gz"

# A disk for the data: the storage engine writes with O_DIRECT, which the
# initramfs (tmpfs) of this kernel does not support.
truncate -s 1G "$WORK/disk.img"
mkfs.ext4 -q -F "$WORK/disk.img"

echo "booting (qemu TCG; this takes a few minutes)"
set +e
timeout "$TIMEOUT" qemu-system-x86_64 -cpu max -smp 2 -m 3072 -nographic -no-reboot \
  -kernel "$KERNEL" -initrd "$WORK/initrd.gz" \
  -append "console=ttyS0 panic=-1 loglevel=3 rdinit=/init" \
  -drive "file=$WORK/disk.img,format=raw,if=virtio" > "$WORK/vm.log" 2>&1
rc=$?
set -e
grep -E "VM kernel|connection modes|every replication|verified|fullsync repaired|realtime drain|KTLS-VM-TEST|failed|rustls comparison" "$WORK/vm.log" || true
if grep -q "KTLS-VM-TEST: PASS" "$WORK/vm.log"; then
  echo "kTLS VM test passed"
  [ -n "${VM_LOG_OUT:-}" ] && cp "$WORK/vm.log" "$VM_LOG_OUT"
  exit 0
fi
echo "kTLS VM test FAILED (qemu exit $rc); last lines of the VM console:"
tail -40 "$WORK/vm.log"
exit 1
