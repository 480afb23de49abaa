// The step language of the POSIX scenario table, the shape of a runner's
// report, and the one place where reports are checked against expectations.
//
// A scenario is data: setup steps, the step under test, check steps. Each
// step names an operation and, optionally, what it must produce. A step with
// no `expect` must succeed. Paths are relative to the scenario's own fresh
// directory (never absolute, no "." or ".." components). Runners only execute
// steps and report what happened (a value or an errno name); they never judge.
// Runners: test/helpers/posix_runner.py (any directory: the local reference,
// later a real mount) and test/helpers/posix-vfs.ts (a Vfs instance).

export type FileType = 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket' | 'other';

export type OpenFlag = 'O_RDONLY' | 'O_WRONLY' | 'O_RDWR' | 'O_CREAT' | 'O_EXCL' | 'O_TRUNC' | 'O_APPEND' | 'O_DIRECTORY';

/**
 * Bytes, as JSON: a string is its UTF-8 encoding; `{ zeros: n }` is n zero
 * bytes; `{ fill: s, len: n }` is s repeated and cut to n bytes; `{ hex }`
 * is raw bytes; an array is the concatenation of its parts.
 */
export type Data = string | { zeros: number } | { fill: string; len: number } | { hex: string } | Data[];

/** A time with nanoseconds, as utimensat(2) takes it (sec may be negative: before 1970). */
export interface Time {
  sec: number;
  nsec: number;
}

/** utimensat(2) arguments: a time, UTIME_NOW or UTIME_OMIT. */
export type TimeArg = Time | 'now' | 'omit';

/** The step must fail with this errno (its name, as in errno.h: 'ENOENT'). */
export interface Fails {
  errno: string;
}

/** The step's value must deep-equal this (string lists are compared sorted by UTF-8 bytes). */
export interface Gives<T> {
  value: T;
}

/** The step's bytes (read, readFile, getxattr) must equal these. */
export interface Reads {
  data: Data;
}

/**
 * Fields a stat must show; the fields left out are not checked. `mode` is the
 * permission part (st_mode & 0o7777). Times: exact, or 'recent' (within two
 * minutes of the check). `ino`: the same inode as the stat saved under that label.
 */
export interface StatExpect {
  type?: FileType;
  mode?: number;
  nlink?: number;
  size?: number;
  uid?: number;
  gid?: number;
  atime?: Time | 'recent';
  mtime?: Time | 'recent';
  ino?: string;
  /** Devices: [major, minor]. */
  rdev?: [number, number];
  /** A different inode than the stat saved under that label. */
  notIno?: string;
}

interface StatLike {
  expect?: Fails | StatExpect;
  /** Remember this inode under a label, for a later `ino`/`notIno` expectation. */
  save?: string;
}

export type Step =
  // file descriptors: `as` names the descriptor, later steps use it as `fd`
  | { op: 'open'; path: string; flags: OpenFlag[]; mode?: number; as: string; expect?: Fails }
  | { op: 'close'; fd: string; expect?: Fails }
  | { op: 'read'; fd: string; pos: number; len: number; expect?: Fails | Reads }
  | { op: 'write'; fd: string; pos: number; data: Data; expect?: Fails | Gives<number> }
  | { op: 'fsync'; fd: string; expect?: Fails }
  | { op: 'ftruncate'; fd: string; size: number; expect?: Fails }
  | ({ op: 'fstat'; fd: string } & StatLike)
  // whole files, for short setups and checks: open(O_CREAT|O_WRONLY|O_TRUNC) + pwrite + close; open(O_RDONLY) + read to EOF + close
  | { op: 'writeFile'; path: string; data: Data; mode?: number; expect?: Fails }
  | { op: 'readFile'; path: string; expect?: Fails | Reads }
  // paths
  | ({ op: 'stat'; path: string } & StatLike)
  | ({ op: 'lstat'; path: string } & StatLike)
  | { op: 'truncate'; path: string; size: number; expect?: Fails }
  | { op: 'mkdir'; path: string; mode: number; expect?: Fails }
  | { op: 'rmdir'; path: string; expect?: Fails }
  | { op: 'unlink'; path: string; expect?: Fails }
  | { op: 'rename'; from: string; to: string; noreplace?: boolean; exchange?: boolean; expect?: Fails }
  | { op: 'link'; from: string; to: string; expect?: Fails }
  | { op: 'symlink'; target: string; path: string; expect?: Fails }
  | { op: 'readlink'; path: string; expect?: Fails | Gives<string> }
  | { op: 'readdir'; path: string; expect?: Fails | Gives<string[]> }
  | { op: 'chmod'; path: string; mode: number; expect?: Fails }
  | { op: 'chown'; path: string; uid: number; gid: number; nofollow?: boolean; expect?: Fails }
  | { op: 'utimens'; path: string; atime: TimeArg; mtime: TimeArg; nofollow?: boolean; expect?: Fails }
  | { op: 'setxattr'; path: string; name: string; value: Data; flag?: 'create' | 'replace'; expect?: Fails }
  | { op: 'getxattr'; path: string; name: string; expect?: Fails | Reads }
  /** user.* names only (other namespaces differ between filesystems). */
  | { op: 'listxattr'; path: string; expect?: Fails | Gives<string[]> }
  | { op: 'removexattr'; path: string; name: string; expect?: Fails }
  | { op: 'mkfifo'; path: string; mode: number; expect?: Fails }
  // bind(2) of a Unix socket at the path (the kernel makes it with mknod S_IFSOCK)
  | { op: 'bind'; path: string; expect?: Fails }
  | { op: 'mknod'; path: string; type: 'file' | 'fifo' | 'char' | 'block' | 'socket'; mode: number; dev?: [major: number, minor: number]; expect?: Fails };

export type Op = Step['op'];

export type Category =
  | 'open'
  | 'read-write'
  | 'truncate'
  | 'mkdir'
  | 'rmdir'
  | 'unlink'
  | 'rename'
  | 'link'
  | 'symlink'
  | 'readdir'
  | 'chmod'
  | 'chown'
  | 'utimens'
  | 'xattr'
  | 'mknod'
  | 'names'
  | 'stat';

export interface Scenario {
  name: string;
  category: Category;
  setup?: Step[];
  /** The step under test. */
  run: Step;
  /** The state afterwards. */
  check?: Step[];
  /**
   * A bug of src/vfs or src/meta that this scenario shows: the runners named
   * expect it to fail (ava test.failing) and show the reason. A plain string
   * names both memory runners. The reference run always asserts the scenario:
   * the expectation is Linux's, never weakened.
   */
  known?: string | Partial<Record<Runner, string>>;
}

/** The runners that may carry a known-bug mark (the reference never does). */
export type Runner = 'memory' | 'memory-uncached' | 'mount';

/** The known-bug reason of a scenario for one runner, if any. */
export function knownFor(s: Scenario, runner: Runner): string | undefined {
  if (s.known === undefined) return undefined;
  if (typeof s.known === 'string') return runner === 'mount' ? undefined : s.known;
  return s.known[runner];
}

/** What a runner is given: the scenario's steps in order (setup, run, check). */
export interface RunnableScenario {
  name: string;
  steps: Step[];
}

/** A stat, as runners report it. `ino` is a decimal string (inode numbers may pass 2^53). */
export interface StatView {
  type: FileType;
  mode: number;
  nlink: number;
  size: number;
  uid: number;
  gid: number;
  ino: string;
  /** [major, minor] of st_rdev. */
  rdev: [number, number];
  atime: Time;
  mtime: Time;
  ctime: Time;
}

/**
 * One step's outcome. Values: stat ops a StatView; read/readFile/getxattr
 * `{ b64 }`; write the byte count; readlink a string; readdir/listxattr a list
 * of names; everything else null. errno 'EXCEPTION' marks a runner-side
 * failure that is no errno (a bug of the runner or a non-POSIX error).
 */
export type Outcome = { ok: true; value: unknown } | { ok: false; errno: string; message?: string };

export interface ScenarioResult {
  name: string;
  steps: Outcome[];
  /** Failures closing the descriptors a scenario left open. */
  cleanup: string[];
}

export function runnable(s: Scenario): RunnableScenario {
  return { name: s.name, steps: [...(s.setup ?? []), s.run, ...(s.check ?? [])] };
}

export function scenarioTitle(s: Scenario): string {
  return `${s.category}: ${s.name}`;
}

// ---- data

export function materialize(d: Data): Buffer {
  if (typeof d === 'string') return Buffer.from(d, 'utf8');
  if (Array.isArray(d)) return Buffer.concat(d.map(materialize));
  if ('zeros' in d) return Buffer.alloc(d.zeros);
  if ('hex' in d) return Buffer.from(d.hex, 'hex');
  const pattern = Buffer.from(d.fill, 'utf8');
  const out = Buffer.alloc(d.len);
  for (let at = 0; at < d.len; at += pattern.length) pattern.copy(out, at, 0, Math.min(pattern.length, d.len - at));
  return out;
}

function describeBytes(b: Buffer): string {
  if (b.length <= 48) return JSON.stringify(b.toString('latin1'));
  return `${b.length} bytes ${JSON.stringify(b.subarray(0, 24).toString('latin1'))}…`;
}

function bytesDiff(want: Buffer, got: Buffer): string | null {
  if (want.equals(got)) return null;
  let k = 0;
  while (k < want.length && k < got.length && want[k] === got[k]) k++;
  return `bytes differ: want ${describeBytes(want)}, got ${describeBytes(got)} (length ${want.length} vs ${got.length}, first difference at offset ${k})`;
}

function sortNames(names: string[]): string[] {
  return [...names].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
}

// ---- description

function oct(n: number): string {
  return `0o${n.toString(8)}`;
}

function short(s: string): string {
  return s.length > 40 ? `${s.slice(0, 20)}…(${Buffer.byteLength(s)} bytes)` : s;
}

export function describeStep(s: Step): string {
  switch (s.op) {
    case 'open':
      return `open(${short(s.path)}, ${s.flags.join('|')}${s.mode === undefined ? '' : `, ${oct(s.mode)}`}) as ${s.as}`;
    case 'close':
    case 'fsync':
    case 'fstat':
      return `${s.op}(${s.fd})`;
    case 'read':
      return `read(${s.fd}, pos ${s.pos}, len ${s.len})`;
    case 'write':
      return `write(${s.fd}, pos ${s.pos}, ${materialize(s.data).length} bytes)`;
    case 'ftruncate':
      return `ftruncate(${s.fd}, ${s.size})`;
    case 'writeFile':
      return `writeFile(${short(s.path)}, ${materialize(s.data).length} bytes)`;
    case 'truncate':
      return `truncate(${short(s.path)}, ${s.size})`;
    case 'mkdir':
    case 'chmod':
    case 'mkfifo':
      return `${s.op}(${short(s.path)}, ${oct(s.mode)})`;
    case 'bind':
      return `bind(AF_UNIX, ${short(s.path)})`;
    case 'mknod':
      return `mknod(${short(s.path)}, ${s.type}, ${oct(s.mode)}${s.dev ? `, ${s.dev.join(':')}` : ''})`;
    case 'rename':
      return `rename(${short(s.from)} → ${short(s.to)}${s.noreplace ? ', RENAME_NOREPLACE' : ''}${s.exchange ? ', RENAME_EXCHANGE' : ''})`;
    case 'link':
      return `link(${short(s.from)} → ${short(s.to)})`;
    case 'symlink':
      return `symlink(${short(s.target)} at ${short(s.path)})`;
    case 'chown':
      return `${s.nofollow ? 'lchown' : 'chown'}(${short(s.path)}, ${s.uid}, ${s.gid})`;
    case 'utimens':
      return `utimens(${short(s.path)}, ${JSON.stringify(s.atime)}, ${JSON.stringify(s.mtime)}${s.nofollow ? ', AT_SYMLINK_NOFOLLOW' : ''})`;
    case 'setxattr':
      return `setxattr(${short(s.path)}, ${short(s.name)}, ${materialize(s.value).length} bytes${s.flag ? `, XATTR_${s.flag.toUpperCase()}` : ''})`;
    case 'getxattr':
    case 'removexattr':
      return `${s.op}(${short(s.path)}, ${short(s.name)})`;
    default:
      return `${s.op}(${short(s.path)})`;
  }
}

function describeStat(v: StatView): string {
  const t = (x: Time) => `${x.sec}.${String(x.nsec).padStart(9, '0')}`;
  return `${v.type} mode ${oct(v.mode)} nlink ${v.nlink} size ${v.size} uid ${v.uid} gid ${v.gid} ino ${v.ino} atime ${t(v.atime)} mtime ${t(v.mtime)}`;
}

function describeOutcome(o: Outcome): string {
  if (!o.ok) return o.errno === 'EXCEPTION' ? `exception ${o.message ?? ''}` : `errno ${o.errno}`;
  if (o.value === null || o.value === undefined) return 'ok';
  if (typeof o.value === 'object' && 'nlink' in o.value) return `ok ${describeStat(o.value as StatView)}`;
  if (typeof o.value === 'object' && o.value !== null && 'b64' in o.value) return `ok ${describeBytes(Buffer.from(String((o.value as { b64: string }).b64), 'base64'))}`;
  return `ok ${JSON.stringify(o.value)}`;
}

/** A step by step account of a run, for failure messages. */
export function trace(s: Scenario, r: ScenarioResult): string {
  const steps = runnable(s).steps;
  const lines = steps.map((st, k) => {
    const o = r.steps[k];
    return `  ${phaseOf(s, k)} ${describeStep(st)} → ${o ? describeOutcome(o) : 'not run'}`;
  });
  if (r.cleanup.length > 0) lines.push(`  cleanup: ${r.cleanup.join('; ')}`);
  return lines.join('\n');
}

function phaseOf(s: Scenario, k: number): string {
  const nSetup = s.setup?.length ?? 0;
  if (k < nSetup) return `setup[${k}]`;
  if (k === nSetup) return 'run';
  return `check[${k - nSetup - 1}]`;
}

// ---- checking

function sameTime(a: Time, b: Time): boolean {
  return a.sec === b.sec && a.nsec === b.nsec;
}

function checkTime(field: string, want: Time | 'recent', got: Time): string | null {
  if (want === 'recent') {
    const ms = got.sec * 1000 + got.nsec / 1e6;
    return Math.abs(ms - Date.now()) <= 120_000 ? null : `${field} ${JSON.stringify(got)} is not recent`;
  }
  return sameTime(want, got) ? null : `${field}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`;
}

function checkStat(want: StatExpect, got: StatView, saved: Map<string, string>): string[] {
  const out: string[] = [];
  const num = (field: 'nlink' | 'size' | 'uid' | 'gid') => {
    const w = want[field];
    if (w !== undefined && w !== got[field]) out.push(`${field}: want ${w}, got ${got[field]}`);
  };
  if (want.type !== undefined && want.type !== got.type) out.push(`type: want ${want.type}, got ${got.type}`);
  if (want.mode !== undefined && want.mode !== got.mode) out.push(`mode: want ${oct(want.mode)}, got ${oct(got.mode)}`);
  if (want.rdev !== undefined && (want.rdev[0] !== got.rdev?.[0] || want.rdev[1] !== got.rdev?.[1])) out.push(`rdev: want ${want.rdev.join(':')}, got ${got.rdev?.join(':')}`);
  num('nlink');
  num('size');
  num('uid');
  num('gid');
  for (const field of ['atime', 'mtime'] as const) {
    const w = want[field];
    if (w === undefined) continue;
    const m = checkTime(field, w, got[field]);
    if (m) out.push(m);
  }
  if (want.ino !== undefined) {
    const s = saved.get(want.ino);
    if (s === undefined) out.push(`ino: no stat saved as ${want.ino}`);
    else if (s !== got.ino) out.push(`ino: want the inode saved as ${want.ino} (${s}), got ${got.ino}`);
  }
  if (want.notIno !== undefined) {
    const s = saved.get(want.notIno);
    if (s === undefined) out.push(`notIno: no stat saved as ${want.notIno}`);
    else if (s === got.ino) out.push(`ino: want another inode than ${want.notIno}, got the same (${s})`);
  }
  return out;
}

function isFails(e: unknown): e is Fails {
  return typeof e === 'object' && e !== null && 'errno' in e;
}

const STAT_OPS: ReadonlySet<Op> = new Set(['stat', 'lstat', 'fstat']);

/** Every way a run differs from its scenario's expectations, each naming the step. Empty: as expected. */
export function checkScenario(s: Scenario, r: ScenarioResult): string[] {
  const steps = runnable(s).steps;
  const out: string[] = [];
  const saved = new Map<string, string>();
  if (r.steps.length !== steps.length) out.push(`the runner reported ${r.steps.length} outcomes for ${steps.length} steps`);
  steps.forEach((step, k) => {
    const o = r.steps[k];
    if (!o) return;
    const where = `${phaseOf(s, k)} ${describeStep(step)}`;
    const expect: unknown = step.expect;
    if (isFails(expect)) {
      if (o.ok) out.push(`${where}: want errno ${expect.errno}, got ${describeOutcome(o)}`);
      else if (o.errno !== expect.errno) out.push(`${where}: want errno ${expect.errno}, got ${describeOutcome(o)}`);
      return;
    }
    if (!o.ok) {
      out.push(`${where}: want success, got ${describeOutcome(o)}`);
      return;
    }
    if (STAT_OPS.has(step.op)) {
      const view = o.value as StatView;
      const label = (step as StatLike).save;
      if (label !== undefined) saved.set(label, view.ino);
      if (expect) for (const m of checkStat(expect as StatExpect, view, saved)) out.push(`${where}: ${m}`);
      return;
    }
    if (expect === undefined) return;
    if (typeof expect === 'object' && expect !== null && 'data' in expect) {
      const got = Buffer.from((o.value as { b64: string }).b64, 'base64');
      const m = bytesDiff(materialize((expect as Reads).data), got);
      if (m) out.push(`${where}: ${m}`);
      return;
    }
    if (typeof expect === 'object' && expect !== null && 'value' in expect) {
      let want = (expect as Gives<unknown>).value;
      let got = o.value;
      if (Array.isArray(want) && Array.isArray(got)) {
        want = sortNames(want as string[]);
        got = sortNames(got as string[]);
      }
      if (JSON.stringify(want) !== JSON.stringify(got)) out.push(`${where}: want ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    }
  });
  for (const c of r.cleanup) out.push(`cleanup: ${c}`);
  return out;
}
