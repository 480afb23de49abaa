#!/usr/bin/env bash
# Rebalance benchmark (not a test): a 4th node joins a cluster holding a big
# file and many small files (quorumfs node add), while a small-file workload
# runs on the mount. Prints the move's throughput (MB/s of chunk copies,
# records/s listed and rewritten) and the workload's time during the move as a
# ratio to the same workload on the idle cluster.
#
#   scripts/bench/rebalance.sh [--files N] [--big-mib M] [--base-port P] [--no-build]
#
# Needs root (FUSE) and ~2 × M MiB free under /var/tmp.
set -euo pipefail
FILES=20000
BIG_MIB=1024
PORT=7921
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --big-mib) BIG_MIB=$2; shift 2 ;;
    --base-port) PORT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "rebalance.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
REPO=$(cd "$(dirname "$0")/../.." && pwd)
[ "$BUILD" = 1 ] && (cd "$REPO" && npx tsc -p tsconfig.json)
CLI="node $REPO/dist/src/cli/main.js"
B=$(mktemp -d /var/tmp/qfs-rebalance.XXXX)
M=$B/mnt
mkdir -p "$M"
PIDS=()
cleanup() {
  fusermount -u "$M" 2>/dev/null || umount -l "$M" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$B"
}
trap cleanup EXIT

$CLI dev --dir "$B/dev" --base-port "$PORT" --mount "$M" > "$B/dev.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do grep -q " $M " /proc/mounts && break; sleep 0.2; done
grep -q " $M " /proc/mounts || { echo "mount did not come up"; cat "$B/dev.log"; exit 1; }
CONFIG=$B/dev/cluster.json

echo "# filling: a ${BIG_MIB} MiB file of random bytes and ${FILES} files of 1-8 KiB"
head -c $((BIG_MIB * 1048576)) /dev/urandom > "$B/big.src"
dd if="$B/big.src" of="$M/big" bs=1M conv=fsync status=none
python3 - "$M/small" "$FILES" <<'EOF'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(1)
for i in range(n):
    d = os.path.join(root, f"d{i // 200:03d}")
    if i % 200 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
        f.write(rnd.randbytes(rnd.randint(1024, 8192)))
EOF
sync

# The workload: 300 files of 4 KiB created, read back and removed, in a fresh directory each run.
workload() {
  python3 - "$M/work-$1" <<'EOF'
import os, sys, time
root = sys.argv[1]
t0 = time.monotonic()
os.makedirs(root)
data = os.urandom(4096)
for i in range(300):
    with open(f"{root}/w{i}", "wb") as f:
        f.write(data)
for i in range(300):
    with open(f"{root}/w{i}", "rb") as f:
        assert f.read() == data
for i in range(300):
    os.unlink(f"{root}/w{i}")
os.rmdir(root)
print(f"{time.monotonic() - t0:.3f}")
EOF
}
IDLE=()
for i in 1 2 3; do IDLE+=("$(workload idle$i)"); done
echo "# workload on the idle cluster, s: ${IDLE[*]}"

N4=$((PORT + 3))
$CLI node --config "$CONFIG" --id n4 --listen "127.0.0.1:$N4" --data-dir "$B/dev/data/n4" > "$B/n4.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q 'node started' "$B/n4.log" && break; sleep 0.1; done

T0=$(date +%s.%N)
$CLI node add --config "$CONFIG" --id n4 --url "ws://127.0.0.1:$N4" > "$B/add.out" 2> "$B/add.err" &
ADD=$!
DURING=()
i=0
while kill -0 "$ADD" 2>/dev/null; do
  i=$((i + 1))
  DURING+=("$(workload during$i)")
done
wait "$ADD" || { echo "node add failed:"; cat "$B/add.err"; exit 1; }
T1=$(date +%s.%N)
echo "# node add: $(echo "$T1 - $T0" | bc) s"
cat "$B/add.err"
cat "$B/add.out"
echo "# workload during the move, s: ${DURING[*]}"
python3 - "$T0" "$T1" "$B/add.err" "${IDLE[*]}" "${DURING[*]}" <<'EOF'
import re, statistics, sys
t0, t1, err, idle, during = float(sys.argv[1]), float(sys.argv[2]), open(sys.argv[3]).read(), sys.argv[4].split(), sys.argv[5].split()
secs = t1 - t0
m = re.findall(r"(\d+) records listed, (\d+) rewritten; (\d+) chunks listed, (\d+) copied \(([\d.]+) MiB\), (\d+) trimmed", err)
if m:
    rl, rw, cl, cc, mib, tr = m[-1]
    print(f"move: {secs:.1f} s; {int(rl) / secs:.0f} records/s listed, {int(rw) / secs:.0f} records/s rewritten; {float(mib) / secs:.1f} MiB/s of chunks copied ({cc} chunks), {tr} copies trimmed")
idle_m = statistics.median(float(x) for x in idle)
if during:
    during_m = statistics.median(float(x) for x in during)
    print(f"workload: idle median {idle_m:.3f} s, during the move median {during_m:.3f} s ({len(during)} runs): {idle_m / during_m:.2f}x the idle speed")
EOF
for d in 1 2 3 4; do echo "n$d: $(du -sh "$B/dev/data/n$d" | cut -f1)"; done
