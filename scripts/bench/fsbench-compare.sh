#!/usr/bin/env bash
# fsbench-compare.sh [--quick] [--no-build] [--out DIR] [--max-load L] [--load-wait S]
#
# Runs the peers' yardstick, ../shared/bench/fsbench.sh (unchanged), in one go on
#   1. local       a temp directory on the same disk ($TMPDIR, default /tmp)
#   2. null-fuse   the do-nothing FUSE fs (src/fuse/null-fs.ts), rows a and b only:
#                  it holds no directories, so the two dd commands of fsbench are
#                  run here on its one file, with the same cache drops
#   3. memfs-fuse  the quorumfs vfs over the in-memory key space
#                  (scripts/bench/memfs-mount.ts): FUSE + vfs, no network, no disk
#   4. quorumfs    `quorumfs dev`: three nodes on loopback (R=3), formatted, mounted
# with the mount options of `quorumfs mount` on all three mounts, and prints one
# markdown table with the ratios and the MooseFS/GlusterFS anchors of
# ANCHORS.md (reference only). Progress goes to stderr, the table to stdout.
#
#   --quick        small sizes unless set in the environment: FSBENCH_SEQ_MIB=256
#                  FSBENCH_FIO_TIME=5 FSBENCH_RUNS=1 FSBENCH_NFILES=1000
#   --no-build     do not run tsc first (dist/ must be current)
#   --out DIR      keep every raw output and log there (default: not kept)
#   --max-load L   before each target, wait until the 1-minute load is below L
#                  (default 2) ...
#   --load-wait S  ... for at most S seconds (default 300), then run anyway
#
# fsbench's knobs (FSBENCH_*) pass through from the environment. The tree for
# (f) is the global npm node_modules when it has at least 1000 files, else
# this repo's node_modules (set FSBENCH_TREE to choose). Must run as root (the
# page cache is dropped). Mounts, processes and temp dirs are removed at the
# end, also on error or Ctrl-C: fusermount -u, then umount -l; processes by pid.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$HERE/../.." && pwd -P)
FSBENCH=${FSBENCH_SCRIPT:-$(cd "$REPO/.." && pwd -P)/shared/bench/fsbench.sh}
ANCHORS=$(dirname "$FSBENCH")/ANCHORS.md
NODE=${NODE:-node}

QUICK=0; BUILD=1; OUT=""; MAX_LOAD=2; LOAD_WAIT=300
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    --max-load) MAX_LOAD=$2; shift ;;
    --load-wait) LOAD_WAIT=$2; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fsbench-compare: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[fsbench-compare %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: fsbench drops the page cache between phases"
[ -x "$FSBENCH" ] || [ -f "$FSBENCH" ] || die "no fsbench.sh at $FSBENCH (set FSBENCH_SCRIPT)"
for tool in fio python3 tar diff dd fusermount umount awk; do
  command -v "$tool" >/dev/null 2>&1 || die "missing tool: $tool"
done

if [ "$QUICK" = 1 ]; then
  export FSBENCH_SEQ_MIB=${FSBENCH_SEQ_MIB:-256} FSBENCH_FIO_TIME=${FSBENCH_FIO_TIME:-5}
  export FSBENCH_RUNS=${FSBENCH_RUNS:-1} FSBENCH_NFILES=${FSBENCH_NFILES:-1000}
fi
SEQ_MIB=${FSBENCH_SEQ_MIB:-1024}
BIG_RUNS=${FSBENCH_BIG_RUNS:-1}

if [ -z "${FSBENCH_TREE:-}" ]; then
  G=$(npm root -g 2>/dev/null || true)
  if [ -n "$G" ] && [ -d "$G" ] && [ "$(find "$G" -type f 2>/dev/null | head -n 1000 | wc -l)" -ge 1000 ]; then
    FSBENCH_TREE=$G
  else
    FSBENCH_TREE=$REPO/node_modules
  fi
fi
export FSBENCH_TREE

if [ "$BUILD" = 1 ]; then
  say "building (tsc -p tsconfig.json)"
  (cd "$REPO" && npx tsc -p tsconfig.json >&2) || say "warning: tsc reported errors (someone may be editing src/); using what it emitted"
fi
for f in dist/scripts/bench/memfs-mount.js dist/scripts/bench/fsbench-table.js dist/src/cli/main.js; do
  [ -f "$REPO/$f" ] || die "$REPO/$f is missing: build first"
done

# ------------------------------------------------------------------ cleanup
BASE=$(mktemp -d "${TMPDIR:-/tmp}/qfs-fsbench.XXXXXX")
FSB_PIDS=()    # fsbench runs (stopped first: they use the mounts)
PIDS=()        # processes we started (serving processes, the dev tree)
MOUNTS=()      # mountpoints we made

is_mounted() { awk -v m="$1" '$2 == m { found = 1 } END { exit !found }' /proc/mounts; }
unmount() {
  local m=$1
  is_mounted "$m" || return 0
  fusermount -u "$m" 2>/dev/null || true
  is_mounted "$m" || return 0
  umount -l "$m" 2>/dev/null || true
}
alive() { kill -0 "$1" 2>/dev/null; }
# wait_gone PID SECONDS: true once the process is gone
wait_gone() {
  local pid=$1 n=$(( $2 * 10 ))
  while alive "$pid" && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
  ! alive "$pid"
}
# children of a pid (all threads), for the dev tree
children() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' || true; }
# stop PID [SIGNAL]: the signal (TERM by default), then KILL after 20 s
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  alive "$pid" || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  wait_gone "$pid" 20 || { say "pid $pid still running after SIG$sig: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; wait_gone "$pid" 5 || true; }
}

CLEANED=0
cleanup() {
  [ "$CLEANED" = 1 ] && return 0
  CLEANED=1
  set +e
  local p m
  for p in "${FSB_PIDS[@]+"${FSB_PIDS[@]}"}"; do stop_pid "$p"; done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$p"; done
  for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do unmount "$m"; done
  # a dev tree whose parent died: its nodes and mount are recorded in PIDS too
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  if [ -n "$OUT" ]; then
    mkdir -p "$OUT" && cp "$BASE"/*.md "$BASE"/*.log "$OUT"/ 2>/dev/null
    say "raw outputs and logs kept in $OUT"
  fi
  for m in "${MOUNTS[@]+"${MOUNTS[@]}"}"; do
    if is_mounted "$m"; then say "warning: $m is still mounted; leaving $BASE in place"; return 0; fi
  done
  rm -rf "$BASE"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ helpers
load1() { awk '{ print $1 }' /proc/loadavg; }
LOADS=()
wait_quiet() { # $1 stage name
  local waited=0
  while awk -v l="$(load1)" -v m="$MAX_LOAD" 'BEGIN { exit !(l >= m) }'; do
    if [ "$waited" -ge "$LOAD_WAIT" ]; then say "load $(load1) still >= $MAX_LOAD after ${LOAD_WAIT} s: running $1 anyway"; break; fi
    [ "$waited" = 0 ] && say "load $(load1) >= $MAX_LOAD: waiting (at most ${LOAD_WAIT} s) before $1"
    sleep 10; waited=$((waited + 10))
  done
  LOADS+=("$1=$(load1)")
  say "$1: load1 $(load1)"
}
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
dd_rate() { awk '/bytes/ && /copied/ { for (i = 1; i <= NF; i++) if ($i == "copied,") { printf "%.1f\n", $1 / $(i + 1) / 1e6; exit } }'; }
median() {
  printf '%s\n' "$@" | grep -E '^[0-9.eE+-]+$' | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "n/a"; exit }
           if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
run_fsbench() { # $1 label, $2 dir, $3 output file
  say "fsbench on $1 ($2)"
  # in the background, so that a signal to this script is handled at once (wait is interruptible)
  FSBENCH_LABEL=$1 bash "$FSBENCH" "$2" > "$3" 2> "$BASE/fsbench-$1.log" &
  FSB_PIDS+=("$!")
  wait "$!" || { say "fsbench on $1 failed:"; tail -n 20 "$BASE/fsbench-$1.log" >&2; return 1; }
  grep -E '^\| [a-f][0-9]?\. ' "$3" | sed "s/^/  [$1] /" >&2 || true
}
# serve_bench FS MOUNTPOINT LOG: starts memfs-mount.js, waits for its mount; sets SERVE_PID
serve_bench() {
  local fs=$1 mnt=$2 log=$3 n=200
  mkdir -p "$mnt"; MOUNTS+=("$mnt")
  "$NODE" "$REPO/dist/scripts/bench/memfs-mount.js" --fs "$fs" --mount "$mnt" --mib "$SEQ_MIB" > "$log" 2>&1 &
  SERVE_PID=$!; PIDS+=("$SERVE_PID")
  while ! grep -q '"ready":true' "$log" 2>/dev/null; do
    alive "$SERVE_PID" || { cat "$log" >&2; die "the $fs mount process exited"; }
    n=$((n - 1)); [ $n -gt 0 ] || die "the $fs mount did not come up in 20 s"
    sleep 0.1
  done
  is_mounted "$mnt" || die "$mnt is not in /proc/mounts"
}
stop_bench() { # $1 pid, $2 mountpoint
  stop_pid "$1" TERM
  unmount "$2"
}
free_base_port() {
  python3 - <<'EOF'
import random, socket
for _ in range(200):
    p = random.randrange(20000, 60000)
    ok = True
    for q in (p, p + 1, p + 2):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", q))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(p)
        break
EOF
}
mount_options_of() { # the "options" field of a JSON log line that has it
  grep -o '"options":"[^"]*"' "$1" | head -n 1 | sed 's/"options":"//; s/"$//'
}

if [ "$QUICK" = 1 ]; then MODE="--quick"
elif [ "$(env | grep '^FSBENCH_' | grep -v '^FSBENCH_TREE=' | wc -l)" -gt 0 ]; then MODE="custom sizes (FSBENCH_* set)"
else MODE="full run (fsbench defaults)"; fi
START=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T0=$(date +%s)
say "work dir $BASE; fsbench $FSBENCH; tree $FSBENCH_TREE; mode $MODE"

# ------------------------------------------------------------------ 1. local
mkdir -p "$BASE/local"
wait_quiet local
run_fsbench local "$BASE/local" "$BASE/local.md"

# ------------------------------------------------------------------ 2. null fuse (a, b)
wait_quiet null-fuse
serve_bench null "$BASE/null-mnt" "$BASE/null-mount.log"
NULL_PID=$SERVE_PID
say "null-fuse: dd ${SEQ_MIB} MiB write/read, ${BIG_RUNS} run(s)"
W=(); R=()
for ((r = 1; r <= BIG_RUNS; r++)); do
  drop_caches
  W+=("$(dd if=/dev/zero of="$BASE/null-mnt/data" bs=1M count="$SEQ_MIB" conv=fsync 2>&1 | dd_rate)")
  drop_caches
  R+=("$(dd if="$BASE/null-mnt/data" of=/dev/null bs=1M 2>&1 | dd_rate)")
done
{
  echo "<!-- fsbench rows a/b only, by fsbench-compare.sh on the null fs: label=null-fuse load1=$(load1) -->"
  echo
  echo "| figure | unit | value |"
  echo "|---|---|---|"
  echo "| a. sequential write ${SEQ_MIB} MiB (dd if=/dev/zero bs=1M conv=fsync) | MB/s | $(median "${W[@]}") |"
  echo "| b. sequential read of it, page cache dropped (dd bs=1M) | MB/s | $(median "${R[@]}") |"
  echo
  echo "<!-- a runs: ${W[*]} ; b runs: ${R[*]} -->"
} > "$BASE/null.md"
grep -E '^\| [ab]\. ' "$BASE/null.md" | sed 's/^/  [null-fuse] /' >&2
NULL_OPTS=$(mount_options_of "$BASE/null-mount.log")
stop_bench "$NULL_PID" "$BASE/null-mnt"

# ------------------------------------------------------------------ 3. memfs fuse
wait_quiet memfs-fuse
serve_bench memfs "$BASE/memfs-mnt" "$BASE/memfs-mount.log"
MEMFS_PID=$SERVE_PID
run_fsbench memfs-fuse "$BASE/memfs-mnt" "$BASE/memfs.md"
MEMFS_OPTS=$(mount_options_of "$BASE/memfs-mount.log")
stop_bench "$MEMFS_PID" "$BASE/memfs-mnt"

# ------------------------------------------------------------------ 4. quorumfs dev cluster
wait_quiet quorumfs
PORT=$(free_base_port)
[ -n "$PORT" ] || die "no three free ports in a row"
QMNT=$BASE/qfs-mnt
mkdir -p "$QMNT"; MOUNTS+=("$QMNT")
say "quorumfs dev: 3 nodes on 127.0.0.1:$PORT-$((PORT + 2)), R=3, data in $BASE/dev, mount $QMNT"
"$NODE" "$REPO/dist/src/cli/main.js" dev --dir "$BASE/dev" --base-port "$PORT" --mount "$QMNT" > "$BASE/quorumfs-dev.log" 2>&1 &
DEV_PID=$!; PIDS+=("$DEV_PID")
n=600
while ! is_mounted "$QMNT"; do
  alive "$DEV_PID" || { tail -n 30 "$BASE/quorumfs-dev.log" >&2; die "quorumfs dev exited before mounting"; }
  n=$((n - 1)); [ $n -gt 0 ] || { tail -n 30 "$BASE/quorumfs-dev.log" >&2; die "quorumfs dev did not mount in 60 s"; }
  sleep 0.1
done
# record the nodes and the mount process: stopped by pid if the dev process cannot
for c in $(children "$DEV_PID"); do PIDS+=("$c"); done
QFS_OPTS=$(mount_options_of "$BASE/quorumfs-dev.log")
QFS_RC=0
run_fsbench quorumfs "$QMNT" "$BASE/quorumfs.md" || QFS_RC=1
say "stopping quorumfs dev (SIGINT: unmount, then the nodes)"
stop_pid "$DEV_PID" INT
unmount "$QMNT"

T1=$(date +%s)

# ------------------------------------------------------------------ the table
same_opts() { [ "${1#fsname=*,}" = "${2#fsname=*,}" ]; }
{
  echo "fsbench-compare ($MODE), $START, $(( (T1 - T0) / 60 )) min $(( (T1 - T0) % 60 )) s"
  echo
  "$NODE" "$REPO/dist/scripts/bench/fsbench-table.js" --local "$BASE/local.md" --null "$BASE/null.md" --memfs "$BASE/memfs.md" \
    --quorumfs "$BASE/quorumfs.md" --anchors "$ANCHORS"
  echo
  echo "| machine | |"
  echo "|---|---|"
  echo "| cpu | $(nproc) × $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) |"
  echo "| memory | $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) |"
  echo "| kernel | $(uname -r) |"
  echo "| node | $("$NODE" -v) |"
  echo "| fs of $(dirname "$BASE") | $(df -T "$BASE" | awk 'NR == 2 { print $2 " on " $1 }') |"
  echo "| load1 before each target | ${LOADS[*]} |"
  echo "| fsbench knobs | SEQ_MIB=$SEQ_MIB FIO_SIZE=${FSBENCH_FIO_SIZE:-64m} FIO_TIME=${FSBENCH_FIO_TIME:-15} RUNS=${FSBENCH_RUNS:-3} BIG_RUNS=$BIG_RUNS NFILES=${FSBENCH_NFILES:-2000} DIRECT=${FSBENCH_DIRECT:-1} |"
  echo "| tree for f | $FSBENCH_TREE |"
  echo "| mount options (quorumfs) | $QFS_OPTS |"
  if same_opts "$QFS_OPTS" "$MEMFS_OPTS" && same_opts "$QFS_OPTS" "$NULL_OPTS"; then
    echo "| mount options (memfs, null) | the same but fsname |"
  else
    echo "| mount options (memfs / null) | $MEMFS_OPTS / $NULL_OPTS (DIFFER) |"
  fi
  echo
  for t in local null memfs quorumfs; do
    grep -E '^<!--|^> ' "$BASE/$t.md" 2>/dev/null | sed "s/^<!-- /<!-- [$t] /; s/^> /> [$t] /" || true
  done
} > "$BASE/compare.md"
cp "$BASE/compare.md" "$BASE/compare.log"
cat "$BASE/compare.md"
[ "$QFS_RC" = 0 ] || die "fsbench on quorumfs failed (see above)"
