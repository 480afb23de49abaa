// Drives test/helpers/locker.py: a child process that takes fcntl and flock
// locks on one file when told to (one lock owner per process). Commands are
// answered in order; a blocking one (setlkw, flock without nb) answers when it
// is granted, interrupted or fails. Teardown kills the process (by its pid).
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

export const LOCKER = fileURLToPath(new URL('../../../test/helpers/locker.py', import.meta.url));

export type LockerCommand =
  | { op: 'setlk' | 'setlkw' | 'getlk'; type: 'read' | 'write' | 'unlock'; start: number; len: number; fd?: number }
  | { op: 'flock'; type: 'shared' | 'exclusive' | 'unlock'; nb?: boolean; fd?: number }
  | { op: 'open' }
  | { op: 'close'; fd?: number }
  | { op: 'write'; offset: number; data: string; fd?: number }
  | { op: 'read'; offset: number; len: number; fd?: number }
  | { op: 'exit' };

export interface LockerAnswer {
  ok: boolean;
  errno?: string;
  type?: string;
  start?: number;
  len?: number;
  pid?: number;
  fd?: number;
  data?: string;
}

export class Locker {
  private readonly answers: LockerAnswer[] = [];
  private readonly waiting: Array<(a: LockerAnswer) => void> = [];
  readonly exited: Promise<number | null>;
  pid = 0;

  private constructor(
    readonly child: ChildProcess,
    private readonly stderr: () => string,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const a = JSON.parse(line) as LockerAnswer;
      const w = this.waiting.shift();
      if (w) w(a);
      else this.answers.push(a);
    });
    this.exited = new Promise((r) => child.once('exit', (code) => r(code)));
  }

  /** Starts a locker on `path` (opened O_RDWR|O_CREAT); killed at teardown. */
  static async start(t: ExecutionContext, path: string): Promise<Locker> {
    const child = spawn('python3', [LOCKER, path], { stdio: ['pipe', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    const l = new Locker(child, () => err);
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await l.exited;
    });
    const hello = await l.next();
    if (!hello.ok || hello.pid === undefined) throw new Error(`locker did not start: ${err}`);
    l.pid = hello.pid;
    return l;
  }

  private next(): Promise<LockerAnswer> {
    const a = this.answers.shift();
    if (a) return Promise.resolve(a);
    return new Promise((resolve, reject) => {
      this.waiting.push(resolve);
      void this.exited.then((code) => reject(new Error(`locker exited (${code}): ${this.stderr()}`)));
    });
  }

  /** Sends a command; resolves with its answer (for a blocking one: once it is granted or fails). */
  send(cmd: LockerCommand): Promise<LockerAnswer> {
    this.child.stdin!.write(JSON.stringify(cmd) + '\n');
    return this.next();
  }

  signal(sig: NodeJS.Signals): void {
    this.child.kill(sig);
  }
}
