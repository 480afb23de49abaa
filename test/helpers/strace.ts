// Tracing a storage node's system calls with strace, and checking from the
// trace alone that every acknowledgement it sent was preceded by the syscalls
// that make the acknowledged write durable.
//
// Why line order is enough: under ptrace a thread stops at the entry and at the
// exit of every traced syscall, and strace writes a line for a stop before it
// lets that thread go on. So if a syscall's exit appears before another's entry
// in the file, the first had returned before the second began executing, in
// whatever threads they ran. No clocks are compared.
//
// Why the correlation is exact: the node's socket traffic is rebuilt byte for
// byte from the traced reads and writes (-xx -s 65536 prints their data in
// full), the WebSocket frames are cut out of it, and each reply frame carries
// the id of the request it answers. The request names the chunk or the key;
// the reply names the state that was stored. What must have reached the disk is
// found by content: the chunk's temp file by name, a record by its key and
// encoded state inside the page lmdb wrote.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { CLI, type TestCluster } from './cluster.js';
import { Decoder } from '../../src/util/codec.js';
import { decodeRequestHeader, decodeResponseHeader } from '../../src/rpc/frame.js';
import * as M from '../../src/rpc/messages.js';
import { decodeBallot, encodeState, BALLOT_BYTES } from '../../src/store/record-codec.js';
import { compareBallots, type Ballot } from '../../src/util/ballot.js';
import type { AcceptorState } from '../../src/store/types.js';

export const STRACE = '/usr/bin/strace';

/**
 * Everything the checks read, plus what would let a write bypass them:
 * msync/sync_file_range/io_uring are traced so the trace shows whether they
 * were used at all.
 */
export const TRACED_SYSCALLS = [
  'openat', 'open', 'creat', 'close', 'dup', 'dup2', 'dup3',
  'read', 'readv', 'pread64', 'recvfrom', 'recvmsg',
  'write', 'writev', 'pwrite64', 'pwritev', 'pwritev2', 'sendto', 'sendmsg',
  'fsync', 'fdatasync', 'sync_file_range', 'syncfs', 'sync', 'msync', 'ftruncate',
  'rename', 'renameat', 'renameat2', 'mkdir', 'mkdirat', 'unlink', 'unlinkat', 'rmdir',
  'accept4', 'accept', 'io_uring_setup',
];

export function straceArgs(traceFile: string): string[] {
  return [
    '-f', // lmdb commits and libuv's fs calls run on other threads
    '--seccomp-bpf', // untraced syscalls do not stop: the node runs at near full speed
    '-qq',
    '-tt',
    '-T',
    '-yy', // fds shown with their path or socket addresses
    '-xx', // every string in hex: no escaping ambiguity
    '-s', '65536', // a socket read is at most 64 KiB: all socket data is printed in full
    '-e', `trace=${TRACED_SYSCALLS.join(',')}`,
    '-o', traceFile,
  ];
}

/**
 * null when strace can trace a child here; otherwise why not. Synchronous
 * because ava wants every test declared before the file's first await.
 */
export function straceUnavailable(): string | null {
  const r = spawnSync(STRACE, ['-f', '--seccomp-bpf', '-qq', '-o', '/dev/null', '-e', 'trace=openat', '--', 'true'], { encoding: 'utf8', timeout: 30_000 });
  if (r.error) return `${STRACE} cannot run (${r.error.message}); install the Debian package strace`;
  if (r.status !== 0) return `strace cannot trace here (exit ${r.status}): ${r.stderr.trim()} (ptrace not permitted?)`;
  return null;
}

// ---------------------------------------------------------------- parsing

export interface StrArg {
  kind: 'str';
  bytes: Buffer;
  truncated: boolean;
}
export interface FdArg {
  kind: 'fd';
  /** AT_FDCWD is -100. */
  fd: number;
  path: string;
}
export interface ListArg {
  kind: 'list';
  items: Arg[];
}
export interface StructArg {
  kind: 'struct';
  fields: Map<string, Arg>;
}
export interface RawArg {
  kind: 'raw';
  text: string;
}
export type Arg = StrArg | FdArg | ListArg | StructArg | RawArg;

export interface Sys {
  /** Index in the parsed list (entry order). */
  index: number;
  pid: number;
  time: string;
  name: string;
  args: Arg[];
  /** null for `= ?` */
  ret: number | null;
  /** The path strace printed for a returned fd (openat, accept4). */
  retPath: string | null;
  errno: string | null;
  /** Trace line numbers (1-based) of the entry and exit stops. */
  entry: number;
  exit: number;
  duration: string | null;
}

const LINE_RE = /^(\d+)\s+(\d\d:\d\d:\d\d\.\d+)\s(.*)$/;
const UNFINISHED = ' <unfinished ...>';
const RESUMED_RE = /^<\.\.\. ([a-z0-9_]+) resumed>(.*)$/;

/** Parses `strace -f -tt -T -yy -xx` output; unfinished/resumed pairs become one event. */
export function parseStrace(text: string): Sys[] {
  const out: Sys[] = [];
  const pending = new Map<number, { text: string; line: number; time: string; index: number }>();
  const lines = text.split('\n');
  for (let n = 0; n < lines.length; n++) {
    const raw = lines[n]!;
    if (raw === '') continue;
    const m = LINE_RE.exec(raw);
    if (!m) throw new Error(`trace line ${n + 1} not understood: ${raw.slice(0, 200)}`);
    const pid = Number(m[1]);
    const time = m[2]!;
    let body = m[3]!;
    if (body.startsWith('---') || body.startsWith('+++')) continue; // signals, exits
    const resumed = RESUMED_RE.exec(body);
    if (resumed) {
      const p = pending.get(pid);
      if (!p) throw new Error(`trace line ${n + 1}: ${resumed[1]} resumed without its start`);
      pending.delete(pid);
      const ev = parseCall(p.text + resumed[2]!, pid, p.time, p.line, n + 1, n + 1);
      // keep entry order: the event was started at p.line
      out[p.index] = ev;
      continue;
    }
    if (body.endsWith(UNFINISHED)) {
      body = body.slice(0, -UNFINISHED.length);
      pending.set(pid, { text: body, line: n + 1, time, index: out.length });
      out.push(placeholder());
      continue;
    }
    out.push(parseCall(body, pid, time, n + 1, n + 1, n + 1));
  }
  // Calls still running when the trace ended (killed process) never returned.
  const done = out.filter((e) => e.name !== '');
  done.forEach((e, i) => (e.index = i));
  return done;
}

function placeholder(): Sys {
  return { index: -1, pid: 0, time: '', name: '', args: [], ret: null, retPath: null, errno: null, entry: 0, exit: 0, duration: null };
}

function parseCall(text: string, pid: number, time: string, entry: number, exit: number, lineNo: number): Sys {
  const open = text.indexOf('(');
  if (open <= 0) throw new Error(`trace line ${lineNo}: no call in ${text.slice(0, 200)}`);
  const name = text.slice(0, open);
  const p = new ArgParser(text, open + 1, lineNo);
  const args = p.args();
  const rest = text.slice(p.pos);
  const rm = /^\s*=\s*(\?|-?\d+|0x[0-9a-f]+)/.exec(rest);
  if (!rm) throw new Error(`trace line ${lineNo}: no return value in ${rest.slice(0, 200)}`);
  let ret: number | null = rm[1] === '?' ? null : Number(rm[1]);
  let after = rest.slice(rm[0].length);
  let retPath: string | null = null;
  if (after.startsWith('<')) {
    const d = new ArgParser(after, 0, lineNo);
    retPath = d.decoration();
    after = after.slice(d.pos);
  }
  const em = /^\s+([A-Z][A-Z0-9_]+)\s/.exec(after);
  const errno = ret !== null && ret < 0 && em ? em[1]! : null;
  if (ret !== null && !Number.isSafeInteger(ret)) ret = null; // mmap addresses and such
  const dm = /<(\d+\.\d+)>\s*$/.exec(after);
  return { index: 0, pid, time, name, args, ret, retPath, errno, entry, exit, duration: dm ? dm[1]! : null };
}

class ArgParser {
  constructor(
    private readonly s: string,
    public pos: number,
    private readonly lineNo: number,
  ) {}

  private fail(what: string): never {
    throw new Error(`trace line ${this.lineNo}: ${what} at column ${this.pos}: ${this.s.slice(Math.max(0, this.pos - 40), this.pos + 40)}`);
  }

  private ws(): void {
    while (this.s[this.pos] === ' ') this.pos++;
  }

  /** After the opening parenthesis; leaves pos after the closing one. */
  args(): Arg[] {
    return this.sequence(')');
  }

  private sequence(close: string): Arg[] {
    const items: Arg[] = [];
    this.ws();
    if (this.s[this.pos] === close) {
      this.pos++;
      return items;
    }
    for (;;) {
      items.push(this.value());
      this.ws();
      const c = this.s[this.pos];
      if (c === ',') {
        this.pos++;
        this.ws();
        // a resumed call may leave an empty slot (`read(fd,  <unfinished ...>` + `"..."`)
        continue;
      }
      if (c === close) {
        this.pos++;
        return items;
      }
      this.fail(`expected , or ${close}`);
    }
  }

  private value(): Arg {
    this.ws();
    const c = this.s[this.pos];
    if (c === '"') return this.string();
    if (c === '[') {
      this.pos++;
      return { kind: 'list', items: this.sequence(']') };
    }
    if (c === '{') {
      this.pos++;
      return this.struct();
    }
    return this.raw();
  }

  private struct(): StructArg {
    const fields = new Map<string, Arg>();
    this.ws();
    let i = 0;
    while (this.s[this.pos] !== '}') {
      const nm = /^([A-Za-z_][A-Za-z0-9_.]*)=(?!>)/.exec(this.s.slice(this.pos, this.pos + 64));
      let key = String(i++);
      if (nm) {
        key = nm[1]!;
        this.pos += nm[0].length;
      }
      fields.set(key, this.value());
      this.ws();
      if (this.s[this.pos] === ',') {
        this.pos++;
        this.ws();
      } else if (this.s[this.pos] !== '}') {
        this.fail('expected , or }');
      }
    }
    this.pos++;
    return { kind: 'struct', fields };
  }

  private string(): StrArg {
    this.pos++; // opening quote
    const bytes: number[] = [];
    for (;;) {
      const c = this.s[this.pos];
      if (c === undefined) this.fail('unterminated string');
      if (c === '"') break;
      if (c === '\\') {
        const n = this.s[this.pos + 1];
        if (n === 'x') {
          bytes.push(parseInt(this.s.slice(this.pos + 2, this.pos + 4), 16));
          this.pos += 4;
          continue;
        }
        const simple: Record<string, number> = { n: 10, t: 9, r: 13, v: 11, f: 12, '\\': 92, '"': 34 };
        if (n !== undefined && n in simple) {
          bytes.push(simple[n]!);
          this.pos += 2;
          continue;
        }
        const oct = /^[0-7]{1,3}/.exec(this.s.slice(this.pos + 1, this.pos + 4));
        if (oct) {
          bytes.push(parseInt(oct[0], 8));
          this.pos += 1 + oct[0].length;
          continue;
        }
        this.fail('unknown escape');
      }
      bytes.push(c.charCodeAt(0) & 0xff);
      this.pos++;
    }
    this.pos++; // closing quote
    let truncated = false;
    if (this.s.startsWith('...', this.pos)) {
      truncated = true;
      this.pos += 3;
    }
    return { kind: 'str', bytes: Buffer.from(bytes), truncated };
  }

  /** `<...>` after an fd; paths are hex under -xx, socket names may hold `->` inside brackets. */
  decoration(): string {
    if (this.s[this.pos] !== '<') this.fail('expected <');
    let depth = 0;
    let j = this.pos + 1;
    for (; j < this.s.length; j++) {
      const c = this.s[j];
      if (c === '[') depth++;
      else if (c === ']') depth--;
      else if (c === '>' && depth === 0) break;
    }
    if (j >= this.s.length) this.fail('unterminated <decoration>');
    const inner = this.s.slice(this.pos + 1, j);
    this.pos = j + 1;
    return inner.replace(/(?:\\x[0-9a-f]{2})+/g, (hex) => Buffer.from(hex.replace(/\\x/g, ''), 'hex').toString('latin1'));
  }

  private raw(): Arg {
    const start = this.pos;
    let depth = 0;
    let decoration: string | null = null;
    let head = '';
    for (;;) {
      const c = this.s[this.pos];
      if (c === undefined) this.fail('unterminated argument');
      if (depth === 0 && (c === ',' || c === ')' || c === ']' || c === '}')) break;
      if (c === '(' || c === '[' || c === '{') depth++;
      else if (c === ')' || c === ']' || c === '}') depth--;
      if (c === '"') {
        this.string();
        continue;
      }
      if (c === '<' && depth === 0 && decoration === null) {
        head = this.s.slice(start, this.pos);
        decoration = this.decoration();
        continue;
      }
      this.pos++;
    }
    const text = this.s.slice(start, this.pos).trim();
    if (decoration !== null) {
      if (/^-?\d+$/.test(head)) return { kind: 'fd', fd: Number(head), path: decoration };
      if (head === 'AT_FDCWD') return { kind: 'fd', fd: -100, path: decoration };
    }
    return { kind: 'raw', text };
  }
}

// ---------------------------------------------------------------- helpers over events

function fdOf(e: Sys, i = 0): FdArg | null {
  const a = e.args[i];
  return a?.kind === 'fd' ? a : null;
}

function strOf(e: Sys, i: number): StrArg | null {
  const a = e.args[i];
  return a?.kind === 'str' ? a : null;
}

function rawOf(e: Sys, i: number): string {
  const a = e.args[i];
  return a?.kind === 'raw' ? a.text : '';
}

/** Buffers of an iovec list as strace prints it. */
function iovData(a: Arg | undefined): StrArg[] {
  if (a?.kind !== 'list') return [];
  const out: StrArg[] = [];
  for (const item of a.items) {
    if (item.kind !== 'struct') continue;
    const base = item.fields.get('iov_base');
    if (base?.kind === 'str') out.push(base);
  }
  return out;
}

const FILE_WRITES = new Set(['write', 'writev', 'pwrite64', 'pwritev', 'pwritev2']);
const SOCKET_READS = new Set(['read', 'readv', 'recvfrom', 'recvmsg']);
const SOCKET_WRITES = new Set(['write', 'writev', 'sendto', 'sendmsg']);
const FLUSHES = new Set(['fsync', 'fdatasync']);
const RENAMES = new Set(['rename', 'renameat', 'renameat2']);

/** The bytes a read/write-family call moved (the first `ret` of them), and whether strace cut any off. */
function dataOf(e: Sys): { bytes: Buffer; truncated: boolean } {
  const parts = e.name === 'writev' || e.name === 'readv' || e.name === 'pwritev' || e.name === 'pwritev2' ? iovData(e.args[1]) : [strOf(e, 1)].filter((x): x is StrArg => x !== null);
  const all = Buffer.concat(parts.map((p) => p.bytes));
  const n = Math.max(0, e.ret ?? 0);
  return { bytes: all.subarray(0, n), truncated: all.length < n || parts.some((p) => p.truncated) };
}

/** One before the other: `a` had returned before `b` started. */
export function before(a: Sys, b: Sys): boolean {
  return a.exit < b.entry;
}

/** Path arguments made absolute: relative ones resolve against their dirfd. */
function pathArgs(e: Sys): string[] {
  const abs = (dirArg: number, pathArg: number): string => {
    const p = strOf(e, pathArg)?.bytes.toString('latin1') ?? '';
    if (p.startsWith('/')) return p;
    const d = fdOf(e, dirArg);
    return d ? join(d.path, p) : p;
  };
  switch (e.name) {
    case 'open':
    case 'creat':
    case 'mkdir':
    case 'rmdir':
    case 'unlink':
      return [abs(-1, 0)];
    case 'openat':
    case 'mkdirat':
    case 'unlinkat':
      return [abs(0, 1)];
    case 'rename':
      return [abs(-1, 0), abs(-1, 1)];
    case 'renameat':
    case 'renameat2':
      return [abs(0, 1), abs(2, 3)];
    default:
      return [];
  }
}

function openFlags(e: Sys): string {
  if (e.name === 'openat') return rawOf(e, 2);
  if (e.name === 'open') return rawOf(e, 1);
  if (e.name === 'creat') return 'O_CREAT|O_WRONLY|O_TRUNC';
  return '';
}

// ---------------------------------------------------------------- the socket side

interface Frame {
  opcode: number;
  payload: Buffer;
  /** The call that carried the frame's first byte, and the one that carried its last. */
  first: Sys;
  last: Sys;
}

interface Stream {
  key: string;
  data: Buffer[];
  starts: number[];
  events: Sys[];
  length: number;
}

function streamFrames(s: Stream, masked: boolean): Frame[] {
  const buf = Buffer.concat(s.data);
  const at = (off: number): Sys => {
    let lo = 0;
    let hi = s.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (s.starts[mid]! <= off) lo = mid;
      else hi = mid - 1;
    }
    return s.events[lo]!;
  };
  const headEnd = buf.indexOf('\r\n\r\n');
  if (headEnd < 0) return [];
  let p = headEnd + 4;
  const frames: Frame[] = [];
  let pending: { opcode: number; parts: Buffer[]; first: Sys } | null = null;
  while (p + 2 <= buf.length) {
    const b0 = buf[p]!;
    const b1 = buf[p + 1]!;
    let len = b1 & 0x7f;
    let q = p + 2;
    if (len === 126) {
      if (q + 2 > buf.length) break;
      len = buf.readUInt16BE(q);
      q += 2;
    } else if (len === 127) {
      if (q + 8 > buf.length) break;
      len = Number(buf.readBigUInt64BE(q));
      q += 8;
    }
    const isMasked = (b1 & 0x80) !== 0;
    if (isMasked !== masked) throw new Error(`${s.key}: a ${isMasked ? 'masked' : 'unmasked'} frame where the protocol says otherwise`);
    let mask: Buffer | null = null;
    if (isMasked) {
      if (q + 4 > buf.length) break;
      mask = buf.subarray(q, q + 4);
      q += 4;
    }
    if (q + len > buf.length) break; // cut off by the connection's end
    const payload = Buffer.from(buf.subarray(q, q + len));
    if (mask) for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i & 3]!;
    const fin = (b0 & 0x80) !== 0;
    const opcode = b0 & 0x0f;
    if (opcode >= 8) {
      // control frames may come between the fragments of a message
      frames.push({ opcode, payload, first: at(p), last: at(q + len - 1) });
    } else if (opcode === 0) {
      // a continuation (a chunk put's bytes follow its head as a second fragment)
      if (!pending) throw new Error(`${s.key}: a continuation frame with no message begun`);
      pending.parts.push(payload);
      if (fin) {
        frames.push({ opcode: pending.opcode, payload: Buffer.concat(pending.parts), first: pending.first, last: at(q + len - 1) });
        pending = null;
      }
    } else {
      if (pending) throw new Error(`${s.key}: a new message began before the last one's final fragment`);
      if (fin) frames.push({ opcode, payload, first: at(p), last: at(q + len - 1) });
      else pending = { opcode, parts: [payload], first: at(p) };
    }
    p = q + len;
  }
  return frames;
}

export interface Exchange {
  conn: string;
  id: number;
  op: number;
  request: Frame;
  reply: Frame;
  status: number;
  /** The request body, decoded with the node's own codecs. */
  body: Decoder;
  replyBody: Decoder;
}

/** Request/reply pairs on every connection to `port`, in reply order. */
export function exchanges(events: readonly Sys[], port: number): Exchange[] {
  const inbound = new Map<string, Stream>();
  const outbound = new Map<string, Stream>();
  const local = `TCP:[127.0.0.1:${port}->`;
  const push = (m: Map<string, Stream>, key: string, e: Sys, bytes: Buffer): void => {
    let s = m.get(key);
    if (!s) m.set(key, (s = { key, data: [], starts: [], events: [], length: 0 }));
    s.data.push(bytes);
    s.starts.push(s.length);
    s.events.push(e);
    s.length += bytes.length;
  };
  for (const e of events) {
    const fd = fdOf(e);
    if (!fd || !fd.path.startsWith(local)) continue;
    const key = `${fd.fd}:${fd.path}`;
    const isRead = SOCKET_READS.has(e.name);
    const isWrite = SOCKET_WRITES.has(e.name);
    if (!isRead && !isWrite) continue;
    if (e.ret === null || e.ret <= 0) continue;
    if (e.name === 'recvmsg' || e.name === 'sendmsg') throw new Error(`trace line ${e.entry}: ${e.name} on a node socket; the checker does not decode msghdr`);
    const { bytes, truncated } = dataOf(e);
    if (truncated || bytes.length !== e.ret) throw new Error(`trace line ${e.entry}: socket data of ${e.name} truncated by strace (-s too small)`);
    push(isRead ? inbound : outbound, key, e, bytes);
  }
  const out: Exchange[] = [];
  for (const [key, ins] of inbound) {
    const requests = new Map<number, Frame>();
    for (const f of streamFrames(ins, true)) {
      if (f.opcode !== 2 || f.payload[0] !== 4) continue;
      requests.set(decodeRequestHeader(f.payload).header.id, f);
    }
    const outs = outbound.get(key);
    if (!outs) continue;
    for (const f of streamFrames(outs, false)) {
      if (f.opcode !== 2 || f.payload[0] !== 5) continue;
      const { header, body: replyBody } = decodeResponseHeader(f.payload);
      const req = requests.get(header.id);
      if (!req) throw new Error(`trace line ${f.first.entry}: reply ${header.id} on ${key} answers no request seen in the trace`);
      if (!before(req.last, f.first)) throw new Error(`trace line ${f.first.entry}: reply ${header.id} sent before its request was read`);
      const { header: rh, body } = decodeRequestHeader(req.payload);
      out.push({ conn: key, id: header.id, op: rh.op, request: req, reply: f, status: header.status, body, replyBody });
    }
  }
  out.sort((a, b) => a.reply.first.entry - b.reply.first.entry);
  return out;
}

// ---------------------------------------------------------------- the durability checks

export type AckKind = 'chunk_put' | 'record_accept' | 'record_prepare' | 'record_purge';

export interface Ack {
  kind: AckKind;
  conn: string;
  id: number;
  /** Chunk id, or the key as text. */
  subject: string;
  /** The call that delivered the request's last byte. */
  request: Sys;
  /** chunk put: 'stored' | 'exists'; records: the stored state's value kind, or 'purged'. */
  outcome: string;
  /** The calls that made it durable, in trace order; the reply last. */
  proof: Sys[];
  problem: string | null;
}

export interface DurabilityReport {
  acks: Ack[];
  /** Acknowledgements that did not promise a write (refused prepares/accepts, purge → false). */
  notWrites: number;
  /** Replies with an error status: nothing was acknowledged. */
  errors: number;
  /** Per-ack failures. */
  problems: string[];
  /** Store files or directories created in the trace whose directory entry was never fsynced before an ack that relies on it. */
  entryProblems: string[];
  /** Things that would let a write bypass the trace (io_uring). */
  blind: string[];
  lmdb: { dataWrites: Map<string, number>; flushes: Map<string, number>; metaWrites: Map<string, number>; msync: number };
}

export interface CheckOptions {
  /** The node's data directory as the node was given it. */
  dataDir: string;
  /** Other spellings of it (its realpath): -yy prints resolved paths. */
  aliases?: string[];
  port: number;
}

export function checkDurability(events: readonly Sys[], opts: CheckOptions): DurabilityReport {
  const D = opts.dataDir.replace(/\/+$/, '');
  const aliases = (opts.aliases ?? []).map((a) => a.replace(/\/+$/, '')).filter((a) => a !== D);
  const canon = (p: string): string => {
    for (const a of aliases) if (p === a || p.startsWith(a + '/')) return D + p.slice(a.length);
    return p;
  };
  const report: DurabilityReport = {
    acks: [],
    notWrites: 0,
    errors: 0,
    problems: [],
    entryProblems: [],
    blind: [],
    lmdb: { dataWrites: new Map(), flushes: new Map(), metaWrites: new Map(), msync: 0 },
  };
  const bump = (m: Map<string, number>, k: string): void => {
    m.set(k, (m.get(k) ?? 0) + 1);
  };

  // Which fd numbers name which open file, as of each call: an open takes effect
  // when it returns, a close as soon as it starts (the number is free from then on).
  const updates: Array<{ line: number; fd: number; value: { path: string; flags: string } | null }> = [];
  for (const e of events) {
    if ((e.name === 'openat' || e.name === 'open' || e.name === 'creat') && e.ret !== null && e.ret >= 0) {
      updates.push({ line: e.exit, fd: e.ret, value: { path: canon(e.retPath ?? pathArgs(e)[0]!), flags: openFlags(e) } });
    }
    const fd = e.name === 'close' ? fdOf(e) : null;
    if (fd) updates.push({ line: e.entry, fd: fd.fd, value: null });
  }
  updates.sort((a, b) => a.line - b.line);
  let applied = 0;
  const fdFlags = new Map<number, { path: string; flags: string }>();
  const DATA_MDB = `${D}/records/data.mdb`;
  const dataWrites: Sys[] = [];
  const metaWrites: Sys[] = [];
  const flushes: Sys[] = [];
  const fileOpens = new Map<string, Sys[]>(); // canonical path -> successful opens
  const byFd = new Map<number, Sys[]>(); // fd number -> calls on it (entry order)
  const renames: Sys[] = [];
  const mkdirs = new Map<string, Sys>(); // dir -> successful mkdir
  const dirFlushes = new Map<string, Sys[]>(); // path (a directory, mostly) -> successful fsyncs of it
  for (const e of events) {
    if (e.name === 'io_uring_setup' && e.ret !== null && e.ret >= 0) {
      report.blind.push(`trace line ${e.entry}: io_uring_setup succeeded: file I/O submitted through io_uring is invisible to strace`);
    }
    while (applied < updates.length && updates[applied]!.line < e.entry) {
      const u = updates[applied++]!;
      if (u.value) fdFlags.set(u.fd, u.value);
      else fdFlags.delete(u.fd);
    }
    if (e.name === 'msync') report.lmdb.msync++;
    if ((e.name === 'openat' || e.name === 'open' || e.name === 'creat') && e.ret !== null && e.ret >= 0) {
      const path = canon(pathArgs(e)[0]!);
      const list = fileOpens.get(path) ?? [];
      list.push(e);
      fileOpens.set(path, list);
    }
    if ((e.name === 'mkdir' || e.name === 'mkdirat') && e.ret === 0) {
      const d = canon(pathArgs(e)[0]!);
      if (!mkdirs.has(d)) mkdirs.set(d, e);
    }
    if (RENAMES.has(e.name) && e.ret === 0) renames.push(e);
    const fd = fdOf(e);
    if (fd && fd.fd >= 0 && e.name !== 'openat' && !e.name.startsWith('mkdir') && !e.name.startsWith('rename') && e.name !== 'unlinkat') {
      const list = byFd.get(fd.fd) ?? [];
      list.push(e);
      byFd.set(fd.fd, list);
      const path = canon(fd.path);
      const open = fdFlags.get(fd.fd);
      // an fd this pass did not see opened (dup'ed, inherited) counts as plain: it can only make the check stricter
      const flags = open && open.path === path ? open.flags : '';
      if (path === DATA_MDB) {
        if (FILE_WRITES.has(e.name)) {
          const sync = /O_DSYNC|O_SYNC/.test(flags);
          (sync ? metaWrites : dataWrites).push(e);
          bump(sync ? report.lmdb.metaWrites : report.lmdb.dataWrites, `${e.name} via ${sync ? 'an O_DSYNC fd' : 'a plain fd'}`);
        } else if (FLUSHES.has(e.name)) {
          flushes.push(e);
          bump(report.lmdb.flushes, e.name);
        }
      }
      if (FLUSHES.has(e.name) && e.ret === 0) {
        const list2 = dirFlushes.get(path) ?? [];
        list2.push(e);
        dirFlushes.set(path, list2);
      }
    }
  }

  /** When the directory entry of `path` (a file or dir created in the trace) became durable: an fsync of its parent after the creation. */
  const entryDurable = (path: string, created: Sys): Sys | null => {
    for (const f of dirFlushes.get(dirname(path)) ?? []) if (before(created, f)) return f;
    return null;
  };
  const dirReady = (dir: string, reply: Sys, proof: Sys[]): string | null => {
    // each level from the chunk's fan-out dir up to the data directory
    for (let d = dir; d !== D && d.startsWith(D + '/'); d = dirname(d)) {
      const mk = mkdirs.get(d);
      if (!mk) return `directory ${d} was not created in the trace, so its entry cannot be shown durable`;
      const f = entryDurable(d, mk);
      if (!f || !before(f, reply)) return `the entry of ${d} (created at line ${mk.entry}) was not fsynced in ${dirname(d)} before the reply`;
      proof.push(mk, f);
    }
    return null;
  };

  /** A chunk's durable chain: temp file created, fully written, fsynced, renamed into place, fan-out dir fsynced. */
  const chunkChain = (cid: string, size: number, after: Sys | null, reply: Sys): { proof: Sys[] } | { problem: string } => {
    const tmpPrefix = `${D}/tmp/${cid}.`;
    const finalPath = `${D}/chunks/${cid.slice(0, 2)}/${cid.slice(2, 4)}/${cid}`;
    const fanout = dirname(finalPath);
    let best = 'no temp file was created for it';
    for (const [path, opens] of fileOpens) {
      if (!path.startsWith(tmpPrefix)) continue;
      for (const o of opens) {
        const flags = openFlags(o);
        if (!/O_CREAT/.test(flags) || !/O_EXCL/.test(flags) || o.ret === null) continue;
        if (after && !before(after, o)) continue;
        const fd = o.ret;
        const calls = (byFd.get(fd) ?? []).filter((c) => c.entry > o.exit && canon(fdOf(c)!.path) === path);
        const closeAt = calls.find((c) => c.name === 'close');
        const life = closeAt ? calls.filter((c) => c.entry <= closeAt.entry) : calls;
        const writes = life.filter((c) => FILE_WRITES.has(c.name));
        const written = writes.reduce((n, w) => n + Math.max(0, w.ret ?? 0), 0);
        const lastWrite = writes[writes.length - 1];
        // A write with O_DIRECT is padded to whole blocks, then cut back to the chunk's length.
        const cut = life.find((c) => c.name === 'ftruncate' && c.ret === 0 && (!lastWrite || before(lastWrite, c)));
        const length = cut ? Number(rawOf(cut, 1)) : written;
        if (length !== size || written < size) {
          best = `its temp file got ${written} of ${size} bytes${cut ? `, cut to ${length}` : ''}`;
          continue;
        }
        const sync = life.find((c) => FLUSHES.has(c.name) && c.ret === 0 && (!lastWrite || before(lastWrite, c)) && (!cut || before(cut, c)));
        if (!sync) {
          best = `its temp file ${path} was never fsynced after its last write`;
          continue;
        }
        const ren = renames.find((r) => {
          const [from, to] = pathArgs(r).map(canon);
          return from === path && to === finalPath && before(sync, r);
        });
        if (!ren) {
          best = `its temp file was not renamed to ${finalPath} after its fsync`;
          continue;
        }
        const dsync = (dirFlushes.get(fanout) ?? []).find((f) => before(ren, f));
        if (!dsync) {
          best = `${fanout} was not fsynced after the rename`;
          continue;
        }
        if (!before(dsync, reply)) {
          best = `the reply (line ${reply.entry}) was sent before the fsync of ${fanout} (line ${dsync.entry}) had returned`;
          if (!before(sync, reply)) best = `the reply (line ${reply.entry}) was sent before the temp file's fsync (line ${sync.entry}) had returned`;
          else if (!before(ren, reply)) best = `the reply (line ${reply.entry}) was sent before the rename (line ${ren.entry}) had returned`;
          continue;
        }
        const proof: Sys[] = [o, ...writes, ...(cut ? [cut] : []), sync];
        if (closeAt) proof.push(closeAt);
        proof.push(ren, dsync);
        const dirProblem = dirReady(fanout, reply, proof);
        if (dirProblem) return { problem: dirProblem };
        return { proof };
      }
    }
    return { problem: best };
  };

  /**
   * A record state is durable once a data.mdb write holding it, an fdatasync
   * after that write, and a meta page write through the O_DSYNC descriptor
   * after that sync have all returned. The latest sealing write before the
   * reply and the latest flush before it leave the widest window for the data
   * write, so checking them is enough.
   */
  const recordSealed = (find: (bytes: Buffer) => boolean, after: Sys, reply: Sys): { proof: Sys[] } | { problem: string } => {
    const meta = [...metaWrites].reverse().find((m) => m.ret !== null && m.ret > 0 && before(m, reply));
    if (!meta) return { problem: `no meta page write had returned before the reply (line ${reply.entry})` };
    const flush = [...flushes].reverse().find((f) => f.ret === 0 && before(f, meta));
    if (!flush) return { problem: `no fdatasync of data.mdb had returned before the last meta write (line ${meta.entry}) preceding the reply` };
    const data = dataWrites.find((w) => before(after, w) && before(w, flush) && w.ret !== null && w.ret > 0 && find(dataOf(w).bytes));
    if (data) return { proof: [data, flush, meta] };
    const late = dataWrites.find((w) => before(after, w) && find(dataOf(w).bytes));
    if (!late) return { problem: 'the state was never written to data.mdb after the request arrived' };
    if (!before(late, reply)) return { problem: `the reply (line ${reply.entry}) was sent before the state reached data.mdb (line ${late.entry})` };
    return { problem: `the state reached data.mdb at line ${late.entry}, but no fdatasync followed by a meta page write completed between it and the reply (line ${reply.entry})` };
  };

  const lastPromise = new Map<string, Ballot>();
  let firstRecordAck: Sys | null = null;
  for (const x of exchanges(events, opts.port)) {
    const reply = x.reply.first;
    if (x.status !== 0) {
      if (x.op === M.Op.ChunkPut || x.op === M.Op.ChunkPutDeferred || x.op === M.Op.RecordAccept || x.op === M.Op.RecordPrepare || x.op === M.Op.RecordPurge) report.errors++;
      continue;
    }
    const ack = (kind: AckKind, subject: string, outcome: string, r: { proof: Sys[] } | { problem: string }): void => {
      const proof = 'proof' in r ? [...r.proof].sort((p1, p2) => p1.entry - p2.entry) : [];
      const a: Ack = { kind, conn: x.conn, id: x.id, subject, request: x.request.last, outcome, proof: [...proof, reply], problem: 'problem' in r ? r.problem : null };
      report.acks.push(a);
      if (a.problem) report.problems.push(`${kind} ${subject} (request ${x.id}, reply at line ${reply.entry}): ${a.problem}`);
    };
    if (x.op === M.Op.ChunkPut || x.op === M.Op.ChunkPutDeferred) {
      const req = M.ChunkPut.decode(x.body);
      const result = x.replyBody.u8('put result');
      const outcome = result === M.PUT_EXISTS ? 'exists' : 'stored';
      // 'exists' leans on an earlier put of the same chunk, which must have completed
      ack('chunk_put', req.id, outcome, chunkChain(req.id, req.bytes.length, outcome === 'stored' ? x.request.last : null, reply));
    } else if (x.op === M.Op.RecordAccept || x.op === M.Op.RecordPrepare) {
      const req = x.op === M.Op.RecordAccept ? M.RecordAccept.decode(x.body) : M.RecordPrepare.decode(x.body);
      const verdict = M.VerdictReply.decode(x.replyBody);
      const keyText = req.key.toString('latin1');
      if (!verdict.ok) {
        report.notWrites++;
        continue;
      }
      lastPromise.set(keyText, verdict.state.promised);
      // lmdb keeps a small record inline in its leaf page: key bytes, then the value bytes
      const needle = Buffer.concat([req.key, encodeState(verdict.state as AcceptorState)]);
      firstRecordAck ??= reply;
      const kind = x.op === M.Op.RecordAccept ? 'record_accept' : 'record_prepare';
      ack(kind, keyText, verdict.state.value.kind, recordSealed((b) => b.includes(needle), x.request.last, reply));
    } else if (x.op === M.Op.RecordPurge) {
      const req = M.RecordPurge.decode(x.body);
      const purged = M.BoolReply.decode(x.replyBody);
      if (!purged) {
        report.notWrites++;
        continue;
      }
      const keyText = req.key.toString('latin1');
      const need = lastPromise.get(keyText) ?? req.ballot;
      const floorKey = Buffer.from('purge-floor');
      // the purge raised the store's floor to at least the key's promise, in the same transaction as the delete
      const holdsFloor = (b: Buffer): boolean => {
        for (let i = b.indexOf(floorKey); i >= 0; i = b.indexOf(floorKey, i + 1)) {
          const at = i + floorKey.length;
          if (at + BALLOT_BYTES > b.length) continue;
          try {
            if (compareBallots(decodeBallot(b.subarray(at, at + BALLOT_BYTES)), need) >= 0) return true;
          } catch {
            // not a ballot after all
          }
        }
        return false;
      };
      firstRecordAck ??= reply;
      ack('record_purge', keyText, 'purged', recordSealed(holdsFloor, x.request.last, reply));
    }
  }

  // The records file itself: its entry in records/ must be durable too before anything in it is acknowledged.
  if (firstRecordAck) {
    const created = (fileOpens.get(DATA_MDB) ?? []).find((o) => /O_CREAT/.test(openFlags(o)));
    if (!created) {
      report.entryProblems.push(`${DATA_MDB} was not opened with O_CREAT in the trace`);
    } else {
      const f = entryDurable(DATA_MDB, created);
      if (!f || !before(f, firstRecordAck)) {
        report.entryProblems.push(`${DATA_MDB} was created (line ${created.entry}) but ${dirname(DATA_MDB)} was not fsynced before the first record acknowledgement (line ${firstRecordAck.entry})`);
      }
      const recordsDir = dirname(DATA_MDB);
      const mk = mkdirs.get(recordsDir);
      const g = mk ? entryDurable(recordsDir, mk) : null;
      if (mk && (!g || !before(g, firstRecordAck))) {
        report.entryProblems.push(`${recordsDir} was created (line ${mk.entry}) but ${D} was not fsynced before the first record acknowledgement`);
      }
    }
  }
  return report;
}

// ---------------------------------------------------------------- showing a proof

/** One readable line per call: hex paths decoded, data summarised. */
export function describe(e: Sys): string {
  const arg = (a: Arg): string => {
    switch (a.kind) {
      case 'fd':
        return a.fd === -100 ? 'AT_FDCWD' : `${a.fd}<${a.path}>`;
      case 'str': {
        const printable = a.bytes.length <= 120 && /^[\x20-\x7e]*$/.test(a.bytes.toString('latin1'));
        return printable ? JSON.stringify(a.bytes.toString('latin1')) : `<${a.bytes.length} bytes>`;
      }
      case 'list':
        return `[${a.items.map(arg).join(', ')}]`;
      case 'struct':
        return `{${[...a.fields].map(([k, v]) => (/^\d+$/.test(k) ? arg(v) : `${k}=${arg(v)}`)).join(', ')}}`;
      case 'raw':
        return a.text;
    }
  };
  const ret = e.ret === null ? '?' : `${e.ret}${e.retPath !== null ? `<${e.retPath}>` : ''}${e.errno ? ` ${e.errno}` : ''}`;
  const split = e.entry !== e.exit ? ` [returned at line ${e.exit}]` : '';
  return `${e.pid} ${e.time} ${e.name}(${e.args.map(arg).join(', ')}) = ${ret}${e.duration ? ` <${e.duration}>` : ''}${split}`;
}

/** Replaces a long directory prefix so excerpts stay short. */
export function shorten(line: string, dir: string, as: string): string {
  return line.split(dir).join(as);
}

// ---------------------------------------------------------------- a traced node

export interface TracedNode {
  /** The node's pid (strace's child). */
  pid: number;
  strace: ChildProcess;
  logs: string[];
  traceFile: string;
  /** strace exits with the node's status once the node has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM to the node, then wait for strace to finish writing. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readTrace(): string;
}

function parentOf(pid: number): number | null {
  try {
    // the command name may hold spaces or parentheses: fields count from the last ')'
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return null;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** `quorumfs node` under strace; teardown kills the node and strace by pid. */
export async function startTracedNode(t: ExecutionContext, cluster: TestCluster, id: string, traceFile: string): Promise<TracedNode> {
  const strace = spawn(STRACE, [...straceArgs(traceFile), '--', process.execPath, CLI, 'node', '--config', cluster.configPath, '--id', id], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, QUORUMFS_LOG_LEVEL: 'info' },
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    strace.once('exit', (code, signal) => resolve({ code, signal }));
  });
  let nodePid = 0;
  const killNode = (signal: NodeJS.Signals): void => {
    if (strace.exitCode !== null || strace.signalCode !== null) return;
    // before "node started" the pid is known only as strace's child
    for (const pid of nodePid > 0 ? [nodePid] : childrenOf(strace.pid!)) {
      // only while it is still strace's child: a pid of an exited node may be reused
      if (parentOf(pid) !== strace.pid) continue;
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  };
  t.teardown(async () => {
    killNode('SIGKILL');
    // strace blocks fatal signals while it runs a command (-I 3), so it ends when its tracee does;
    // SIGKILL is the last resort (it would detach a tracee, hence the node is killed first)
    const timer = setTimeout(() => {
      if (strace.exitCode === null && strace.signalCode === null) strace.kill('SIGKILL');
    }, 10_000);
    await exited;
    clearTimeout(timer);
  });
  const logs: string[] = [];
  let stderr = '';
  strace.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`traced node ${id} did not start in 60 s: ${stderr}`)), 60_000);
    strace.stdout!.setEncoding('utf8').on('data', (s: string) => {
      buf += s;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        if (line.includes('"node started"')) {
          clearTimeout(timer);
          nodePid = (JSON.parse(line) as { pid: number }).pid;
          resolve();
        }
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`traced node ${id} exited (${code ?? signal}) before starting: ${stderr}`));
    });
  });
  if (parentOf(nodePid) !== strace.pid) throw new Error(`node pid ${nodePid} from its log is not strace's child`);
  return {
    pid: nodePid,
    strace,
    logs,
    traceFile,
    exited,
    async stop() {
      killNode('SIGTERM');
      return exited;
    },
    readTrace: () => readFileSync(traceFile, 'utf8'),
  };
}

export async function pathAliases(dir: string): Promise<string[]> {
  return [await realpath(dir)];
}
