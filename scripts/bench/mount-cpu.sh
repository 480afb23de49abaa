#!/usr/bin/env bash
# mount-cpu.sh DIST dev|memfs [-o OPTIONS] -- what a 1 GiB sequential write and a cold read cost the
# serving processes. Starts `quorumfs dev` (three nodes, R=3, base port ${BASE_PORT:-7911}) or
# memfs-mount.js from DIST (a built tree's dist/, e.g. another checkout's, to compare builds),
# writes ${SRC:-/tmp/fsbench-cache/random-1024MiB.bin} into it (dd bs=1M conv=fsync), drops the
# page cache (root), reads it back (dd bs=1M), and prints one line: MB/s both ways and the CPU
# seconds the mount and the nodes used during each (from /proc/PID/stat). CPU seconds hold up on a
# loaded machine better than MB/s do. Everything it starts is stopped, its temp dir removed.
# (Used for docs/fuse-binding.md, "libfuse 3".)
set -u
DIST=$1; KIND=$2; shift 2
SRC=${SRC:-/tmp/fsbench-cache/random-1024MiB.bin}
[ -r "$SRC" ] || { echo "mount-cpu: $SRC missing (fsbench.sh makes it, or: dd if=/dev/urandom of=$SRC bs=1M count=1024)" >&2; exit 2; }
W=$(mktemp -d /var/tmp/mount-cpu.XXXX); M=$W/mnt; mkdir -p "$M"
cleanup() {
  [ -n "${PID:-}" ] && kill -INT "$PID" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  grep -q " $M " /proc/mounts && { fusermount -u "$M" 2>/dev/null || umount -l "$M"; }
  wait 2>/dev/null; rm -rf "$W"
}
trap cleanup EXIT
case "$KIND" in
  dev) setsid node "$DIST/src/cli/main.js" dev --dir "$W/dev" --base-port "${BASE_PORT:-7911}" --mount "$M" "$@" > "$W/log" 2>&1 & PID=$! ;;
  memfs) node "$DIST/scripts/bench/memfs-mount.js" --mount "$M" "$@" > "$W/log" 2>&1 & PID=$! ;;
  *) echo "usage: mount-cpu.sh DIST dev|memfs [-o OPTIONS]" >&2; exit 2 ;;
esac
for _ in $(seq 300); do grep -q " $M fuse" /proc/mounts && break; sleep 0.1; done
grep -q " $M fuse" /proc/mounts || { echo "mount-cpu: not mounted; log:" >&2; cat "$W/log" >&2; exit 1; }
sleep 1
cpu() { local t=0 p; for p in $(pgrep -f "$1"); do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
MP="main.js mount .*$W|memfs-mount.js --mount $M"; NP="main.js node .*$W"
cat "$SRC" > /dev/null
m0=$(cpu "$MP"); n0=$(cpu "$NP"); t0=$(date +%s.%N)
dd if="$SRC" of="$M/f" bs=1M conv=fsync status=none
t1=$(date +%s.%N); m1=$(cpu "$MP"); n1=$(cpu "$NP")
sync; [ -w /proc/sys/vm/drop_caches ] && echo 3 > /proc/sys/vm/drop_caches
m2=$(cpu "$MP"); n2=$(cpu "$NP"); t2=$(date +%s.%N)
dd if="$M/f" of=/dev/null bs=1M status=none
t3=$(date +%s.%N); m3=$(cpu "$MP"); n3=$(cpu "$NP")
MB=$(stat -c %s "$SRC")
awk -v T="$KIND $*" -v l="$(cut -d' ' -f1 /proc/loadavg)" -v mb="$MB" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" \
  -v m0="$m0" -v m1="$m1" -v m2="$m2" -v m3="$m3" -v n0="$n0" -v n1="$n1" -v n2="$n2" -v n3="$n3" -v hz="$(getconf CLK_TCK)" \
  'BEGIN { printf "%s load1 %s | write %.1f MB/s, mount %.2f nodes %.2f cpu-s | read %.1f MB/s, mount %.2f nodes %.2f cpu-s\n",
           T, l, mb/1e6/(t1-t0), (m1-m0)/hz, (n1-n0)/hz, mb/1e6/(t3-t2), (m3-m2)/hz, (n3-n2)/hz }'
