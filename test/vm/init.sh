#!/bin/busybox sh
# /init of the test VM's initramfs: load the modules, mount the host's / read-only and the project writable,
# then chroot and run the command the host left in <project>/.vm-run/<pid>/cmd.sh. Written for busybox sh.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules); do insmod "$m" 2>/dev/null; done
echo "vm: kernel $(uname -r)"
project=$(sed -n 's/.*devmapper\.project=\([^ ]*\).*/\1/p' /proc/cmdline)
run=$(sed -n 's/.*devmapper\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
opts=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$opts,ro,cache=loose" hostroot /newroot || { echo "init: cannot mount host root"; poweroff -f; }
for d in tmp run; do mount -t tmpfs tmpfs /newroot/$d; done
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/shm /newroot/dev/pts && mount -t tmpfs tmpfs /newroot/dev/shm
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
# The project may sit under a folder the guest just covered with tmpfs (/tmp, /run): make the mount point.
mkdir -p "/newroot$project" 2>/dev/null
# Cached too: without it every read of the project (each process's require() of dist/ and node_modules) is a
# 9p round trip, and a node start takes several times as long. Nothing the guest reads changes on the host while
# the VM runs; what the guest writes reaches the host by the sync below.
mount -t 9p -o "$opts,rw,cache=loose" project "/newroot$project" || { echo "init: cannot mount project"; poweroff -f; }
ip link set lo up 2>/dev/null
chroot /newroot /bin/sh "$run/cmd.sh"
echo $? > "/newroot$run/rc"
sync
poweroff -f
