#!/usr/bin/env bash
# Prepares the VM tier of the lab (see agent/lab/vm.rs): a private qemu-system-x86_64 and a
# Debian bookworm disk image with the cloud kernel, for what this machine's kernel lacks (dummy
# links, device-mapper). Idempotent and cached: everything goes under
# $KILN_VM_CACHE/<version>/ (default /var/cache/kiln-lab/vm), and a prepared version is left
# alone, so a second run takes ~0 s. Needs root, apt-get, debootstrap, mke2fs, ssh-keygen and the
# Debian mirror. No stdin. Prints the ready folder as its last line.
#
#   tests/lab/vm-prepare.sh            prepare (or find) the current version
#
# Why not `apt-get install qemu-system-x86`: it conflicts with the preinstalled qemu-utils (a
# backport). So its .debs (and those of its libraries that are not installed) are unpacked with
# `dpkg-deb -x` into a private folder and run with LD_LIBRARY_PATH and -L data folders.
# Why mke2fs -d: it builds the root filesystem image from a folder without loop mounts.
# Bump VM_VERSION whenever what this script makes changes (agent/lab/vm.rs reads it from here).
set -euo pipefail

VM_VERSION=bookworm-5
cache=${KILN_VM_CACHE:-/var/cache/kiln-lab/vm}
mirror=${KILN_VM_MIRROR:-http://deb.debian.org/debian}
out=$cache/$VM_VERSION
export DEBIAN_FRONTEND=noninteractive LC_ALL=C
export PATH=$PATH:/usr/sbin:/sbin

if [ -f "$out/ready" ]; then
  echo "$out"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "vm-prepare: needs root (debootstrap, file ownership in the image)" >&2
  exit 1
fi
for t in apt-get apt-cache dpkg-deb debootstrap mke2fs ssh-keygen qemu-img; do
  command -v "$t" >/dev/null || {
    echo "vm-prepare: \`$t\` is missing (apt-get install -y debootstrap e2fsprogs openssh-client qemu-utils)" >&2
    exit 1
  }
done

mkdir -p "$cache"
chmod 700 "$cache"
exec 9>"$cache/.lock"
flock 9
if [ -f "$out/ready" ]; then echo "$out"; exit 0; fi
start=$(date +%s)
# A failed run leaves its work folder; the steps that finished (qemu, debootstrap) are kept.
work=$out.work
mkdir -p "$work"

# --- qemu: the .debs apt would install for qemu-system-x86 (minus what is installed), unpacked.
if [ ! -s "$work/qemu-version" ]; then
echo "vm-prepare: fetching qemu-system-x86 and its missing libraries" >&2
rm -rf "$work/debs" "$work/qemu"
mkdir -p "$work/debs" "$work/qemu"
apt-cache policy qemu-system-x86 2>/dev/null | grep -q 'Candidate: [0-9]' || apt-get update -qq
# apt's own resolver says what is missing; its plan to remove qemu-utils is only simulated (asked
# for explicitly with `qemu-utils-`: with some packages installed apt no longer offers it itself and
# stops with "pkgProblemResolver::Resolve generated breaks").
# --reinstall: the named packages are listed even where they are installed ("Inst p [old] (new ..)").
mapfile -t debs < <(apt-get install -s --reinstall --no-install-recommends qemu-system-x86 seabios \
  ipxe-qemu qemu-utils- 2>/dev/null | awk '/^Inst /{ for (i = 3; i <= NF; i++) if ($i ~ /^\(/) {
    v = $i; gsub(/[()]/, "", v); print $2 "=" v; break } }')
if [ ${#debs[@]} -eq 0 ]; then
  echo "vm-prepare: apt-get install -s qemu-system-x86 planned nothing; run apt-get update" >&2
  exit 1
fi
# (apt warns that _apt cannot reach this root-only folder and downloads as root: harmless.)
(cd "$work/debs" && apt-get download -q "${debs[@]}" 2>&1 >/dev/null | grep -v unsandboxed >&2 || true)
ls "$work"/debs/*.deb >/dev/null
for d in "$work"/debs/*.deb; do dpkg-deb -x "$d" "$work/qemu"; done
qemu=$work/qemu/usr/bin/qemu-system-x86_64
# Some Debian libraries (libnl) still install to /lib.
libs=$work/qemu/usr/lib/x86_64-linux-gnu:$work/qemu/lib/x86_64-linux-gnu
if LD_LIBRARY_PATH=$libs ldd "$qemu" | grep -q 'not found'; then
  echo "vm-prepare: qemu-system-x86_64 still misses libraries:" >&2
  LD_LIBRARY_PATH=$libs ldd "$qemu" | grep 'not found' >&2
  exit 1
fi
LD_LIBRARY_PATH=$libs "$qemu" --version | head -1 > "$work/qemu-version"
rm -rf "$work/debs"
fi

# --- the root: minbase bookworm plus the cloud kernel and what the tests drive.
echo "vm-prepare: debootstrap bookworm (minbase + cloud kernel)" >&2
root=$work/root
include=linux-image-cloud-amd64,initramfs-tools,systemd-sysv,udev,dbus,openssh-server,lvm2
include=$include,cloud-guest-utils,e2fsprogs,xfsprogs,iproute2,kmod,sudo,parted,fdisk,procps
include=$include,util-linux
# The ci-builder environment's Debian prerequisites (seed_host_packages.Debian): the VM has no
# mirror, so `seed host configure` must find them installed (tests/vm_ci_builder.rs).
include=$include,gcc,git,libffi-dev,python3-dev,python-is-python3,python3-venv
if [ ! -f "$root/.kiln-debootstrapped" ]; then
  rm -rf "$root"
  debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror" \
    > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; exit 1; }
  touch "$root/.kiln-debootstrapped"
fi

# Kernel and initrd, booted directly with -kernel/-initrd. The initrd must carry virtio_blk
# (root=/dev/vda) and ext4.
kernel=$(ls "$root"/boot/vmlinuz-* | sort -V | tail -1)
initrd=$(ls "$root"/boot/initrd.img-* | sort -V | tail -1)
for m in virtio_blk ext4; do
  # lsinitramfs is in the root; run it there.
  # (grep -c, not grep -q: with pipefail, -q's early exit would fail lsinitramfs on SIGPIPE)
  if [ "$(chroot "$root" lsinitramfs "/boot/$(basename "$initrd")" | grep -c "/$m.ko")" = 0 ]; then
    # Built into the kernel is fine too.
    kver=${kernel##*/vmlinuz-}
    if ! grep -q "kernel/.*/$m.ko" "$root/lib/modules/$kver/modules.builtin"; then
      echo "vm-prepare: the initrd $initrd has no $m module" >&2
      exit 1
    fi
  fi
done
cp "$kernel" "$work/vmlinuz"
cp "$initrd" "$work/initrd.img"
basename "$kernel" > "$work/kernel-version"

# Identity, network (slirp's fixed addresses, no DHCP wait), fstab, console.
echo kiln-vm > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 kiln-vm\n' > "$root/etc/hosts"
printf '/dev/vda / ext4 defaults,noatime 0 1\n' > "$root/etc/fstab"
: > "$root/etc/machine-id"
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/10-eth0.network" <<'EOF'
# Written by kiln's vm-prepare.sh: qemu user-mode networking (slirp) has fixed addresses.
[Match]
Name=eth0

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
DNS=10.0.2.3
EOF
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
# Nothing in the tests needs these, and under TCG every unit costs boot time.
# (Measured: e2scrub_reap alone cost 14 s of a 40 s boot.)
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
         fstrim.timer systemd-networkd-wait-online.service lvm2-monitor.service \
         modprobe@fuse.service modprobe@efi_pstore.service systemd-journal-flush.service \
         dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount \
         sys-kernel-config.mount sys-fs-fuse-connections.mount; do
  chroot "$root" systemctl mask "$u" >/dev/null 2>&1 || true
done
ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"

# sshd: its own host key (generated here), keys only, the VM's key for root and kiln.
rm -f "$root"/etc/ssh/ssh_host_*
ssh-keygen -q -t ed25519 -N '' -C kiln-vm-host -f "$root/etc/ssh/ssh_host_ed25519_key"
cp "$root/etc/ssh/ssh_host_ed25519_key.pub" "$work/host_key.pub"
cat > "$root/etc/ssh/sshd_config.d/kiln.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
EOF
[ -f "$work/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C kiln-vm-lab -f "$work/id_ed25519"
chroot "$root" id kiln >/dev/null 2>&1 || chroot "$root" useradd -m -s /bin/bash kiln
printf 'kiln ALL=(ALL) NOPASSWD: ALL\n' > "$root/etc/sudoers.d/kiln"
chmod 440 "$root/etc/sudoers.d/kiln"
for home in root home/kiln; do
  install -d -m 700 "$root/$home/.ssh"
  install -m 600 "$work/id_ed25519.pub" "$root/$home/.ssh/authorized_keys"
  # A clean shell: nothing in the dotfiles slows down every SSH command.
  : > "$root/$home/.bashrc"
  : > "$root/$home/.profile"
done
chroot "$root" chown -R kiln:kiln /home/kiln
chroot "$root" sh -c 'echo "root:*" | chpasswd -e'

# Smaller image: package caches and docs are not needed.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*

# The root filesystem image, from the folder (no loop mount); qemu boots an overlay of it.
echo "vm-prepare: building the root image" >&2
rm -f "$work/root.img" "$root/.kiln-debootstrapped"
mke2fs -q -t ext4 -L kiln-root -d "$root" "$work/root.img" 3G >&2
rm -rf "$root"

echo "$VM_VERSION" > "$work/version"
echo "$(( $(date +%s) - start ))" > "$work/prepare-seconds"
touch "$work/ready"
rm -rf "$out"
mv "$work" "$out"
# Older versions are dead weight (~600 MB each).
for old in "$cache"/*/; do
  old=${old%/}
  case ${old##*/} in "$VM_VERSION"|"$VM_VERSION".work) ;; *) rm -rf "$old" ;; esac
done
echo "vm-prepare: ready in $(cat "$out/prepare-seconds") s: $out" >&2
echo "$out"
