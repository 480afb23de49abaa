// The calling side: one authenticated WebSocket to one node, many requests in
// flight, a deadline on each, a bounded queue while (re)connecting, and
// reconnection with jittered exponential backoff for as long as the client lives.
import { WebSocket, type RawData } from 'ws';
import type { Decoder, Encoder } from '../util/codec.js';
import {
  FrameType,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  decodeAuthOk,
  decodeHello,
  decodePushHeader,
  decodeResponseHeader,
  encodeAuth,
  frameType,
  requestEncoder,
  REQUEST_EPOCH_OFFSET,
  MAX_ERROR_MESSAGE,
  RESPONSE_HEADER_BYTES,
  REQUEST_HEADER_BYTES,
} from './frame.js';
import { clientProof, newNonce, proofsEqual, serverProof } from './auth.js';
import { QfsError, byteToErrorCode, toQfsError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { corkForTick } from './tick-cork.js';
import { wholeFrameConnection } from './whole-frames.js';
import { FramePool } from './frame-pool.js';
import type { createConnection } from 'node:net';

export interface RpcClientOptions {
  url: string;
  secret: Buffer;
  clusterName: string;
  log: Logger;
  /** PEM CA bundle for wss:// URLs. */
  ca?: Buffer;
  defaultTimeoutMs?: number;
  connectTimeoutMs?: number;
  maxInFlight?: number;
  /** Requests waiting for a connection or an in-flight slot; beyond it, `busy`. */
  maxQueued?: number;
  maxBufferedBytes?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
  bodySizeHint?: number;
  /** While not connected, wait at most this long for the connection (default: the whole timeout). */
  connectWaitMs?: number;
  /** The epoch to place this request by, instead of the client's own (a mover installing a membership). */
  epoch?: number;
  /**
   * Bytes that end the request's body, after what `write` appended. They go
   * out as a second WebSocket fragment of the same message, as they are: a
   * chunk put to three replicas is not copied into three frames (the node's
   * ws joins the fragments, as it joins its socket reads anyway).
   */
  tail?: Buffer;
}

interface Pending {
  resolve(d: Decoder): void;
  reject(e: QfsError): void;
  timer: NodeJS.Timeout;
  cleanup(): void;
}

interface Waiter {
  wake(): void;
  fail(e: QfsError): void;
}

/** Request frames with a body this big or bigger (chunk puts) are written into buffers used again: frame-pool.ts. */
const POOLED_BODY = 256 * 1024;
const bigFrames = new FramePool();

/** Full-jitter exponential backoff: pure, so it is testable on its own. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random = Math.random): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.round(minMs / 2 + random() * (cap - minMs / 2));
}

/** How long a ping sent to a silent node may go unanswered before its connection is dropped. */
const PROBE_MS = 2000;

export class RpcClient {
  private ws: WebSocket | null = null;
  private state: 'idle' | 'connecting' | 'open' | 'closed' = 'idle';
  private nextId = 1;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private readonly pending = new Map<number, Pending>();
  private readonly waiters: Waiter[] = [];
  private readonly log: Logger;
  private lastError: QfsError | null = null;
  /** Listeners for connection state, e.g. health tracking in the cluster layer. */
  onStateChange: ((up: boolean) => void) | null = null;
  /** The state last told to onStateChange (null: nothing yet). */
  private reportedUp: boolean | null = null;
  /**
   * The membership epoch this client's requests are placed by (0: none); the
   * cluster layer keeps it current. Written into each request as it is sent.
   */
  epoch = 0;
  /** When the last frame came from the node (Date.now()), and whether a ping is out to see that it is still there. */
  /** Frames received on this client's connections: a count, not a clock, so a frame that lands in the same millisecond as a send still tells them apart. */
  private framesHeard = 0;
  private probing = false;
  /** Unasked frames from the node (lease recalls); a throw drops the connection as for any bad frame. */
  onPush: ((kind: number, body: Decoder) => void) | null = null;

  constructor(readonly options: RpcClientOptions) {
    this.log = options.log.child({ peer: options.url });
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /** Starts connecting; calls also connect on demand. */
  connect(): void {
    if (this.state !== 'idle') return;
    this.open();
  }

  private open(): void {
    this.state = 'connecting';
    const ws = new WebSocket(this.options.url, {
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      // A zero masking key: ws then sends frames as they are, without XOR-ing a copy
      // of every payload (1 MiB per chunk, three times per chunk put). Masking guards
      // browsers' connections against poisoning the caches of proxies in the middle;
      // this is a node-to-node protocol, authenticated by HMAC, optionally in TLS.
      generateMask: (mask: Buffer) => void mask.fill(0),
      handshakeTimeout: this.options.connectTimeoutMs ?? 3000,
      ...(this.options.ca ? { ca: this.options.ca } : {}),
      // Big frames (chunks) reach ws in one buffer each, so it does not copy them together (whole-frames.ts).
      ...(this.options.url.startsWith('ws:') ? { createConnection: wholeFrameConnection(MAX_FRAME_BYTES) as unknown as typeof createConnection } : {}),
    });
    this.ws = ws;
    const clientNonce = newNonce();
    let serverNonce: Buffer | null = null;
    const authTimer = setTimeout(() => fail(new QfsError('timeout', 'handshake timed out')), (this.options.connectTimeoutMs ?? 3000) * 2);

    const fail = (e: QfsError): void => {
      this.lastError = e;
      ws.terminate();
    };

    ws.on('message', (data: RawData, isBinary: boolean) => {
      this.framesHeard++;
      if (!isBinary || !Buffer.isBuffer(data)) return fail(new QfsError('bad_request', 'non-binary frame from server'));
      try {
        const type = frameType(data);
        if (this.ws !== ws) return;
        if (serverNonce === null) {
          if (type !== FrameType.Hello) throw new QfsError('auth', `expected hello, got frame type ${type}`);
          const hello = decodeHello(data);
          if (hello.version !== PROTOCOL_VERSION) throw new QfsError('auth', `server speaks protocol ${hello.version}, this client ${PROTOCOL_VERSION}: upgrade nodes and mounts together`);
          if (hello.clusterName !== this.options.clusterName) {
            throw new QfsError('auth', `server belongs to cluster ${JSON.stringify(hello.clusterName)}`);
          }
          serverNonce = hello.nonce;
          const proof = clientProof(this.options.secret, this.options.clusterName, serverNonce, clientNonce);
          ws.send(encodeAuth(clientNonce, proof));
        } else if (this.state === 'connecting') {
          if (type !== FrameType.AuthOk) throw new QfsError('auth', `expected auth-ok, got frame type ${type}`);
          const { proof } = decodeAuthOk(data);
          if (!proofsEqual(proof, serverProof(this.options.secret, this.options.clusterName, serverNonce, clientNonce))) {
            throw new QfsError('auth', 'server failed to prove the cluster secret');
          }
          clearTimeout(authTimer);
          this.onOpen();
        } else if (type === FrameType.Response) {
          this.onResponse(data);
        } else if (type === FrameType.Push) {
          const { kind, body } = decodePushHeader(data);
          this.onPush?.(kind, body);
        } else {
          throw new QfsError('bad_request', `unexpected frame type ${type}`);
        }
      } catch (err) {
        const e = toQfsError(err);
        this.log.warn({ reason: e.message }, 'dropping connection');
        fail(e);
      }
    });
    ws.on('error', (err) => {
      this.lastError = new QfsError('unavailable', `${this.options.url}: ${err.message}`, { cause: err });
    });
    ws.on('close', (code, reason) => {
      clearTimeout(authTimer);
      if (this.ws !== ws) return;
      if (code >= 4000 && !this.lastError) this.lastError = new QfsError('unavailable', `closed by node: ${reason.toString()}`);
      this.onClosed();
    });
  }

  private onOpen(): void {
    this.state = 'open';
    this.attempt = 0;
    this.lastError = null;
    this.log.debug('connected');
    this.reportedUp = true;
    this.onStateChange?.(true);
    this.wakeWaiters();
  }

  private onClosed(): void {
    const wasOpen = this.state === 'open';
    this.ws = null;
    const err = this.lastError ?? new QfsError('unavailable', `connection to ${this.options.url} closed`);
    // Requests on the lost connection may or may not have run; the caller decides (all our ops are idempotent).
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(new QfsError('unavailable', err.message));
    }
    if (wasOpen) this.log.info({ reason: err.message }, 'disconnected');
    // A node that could not be reached from the first attempt is down too: when
    // it answers later, the listeners hear that it is back (self-heal, hints).
    if (this.reportedUp !== false) {
      this.reportedUp = false;
      this.onStateChange?.(false);
    }
    if (this.state === 'closed') return;
    this.state = 'idle';
    const delay = backoffDelay(this.attempt++, this.options.backoffMinMs ?? 50, this.options.backoffMaxMs ?? 2000);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.state === 'idle') this.open();
    }, delay);
  }

  /**
   * Skips the rest of a reconnect backoff: a caller needs this node now (a
   * node that was restarted is then found at once instead of after up to the
   * backoff maximum). No-op while connecting or connected.
   */
  reconnectNow(): void {
    if (this.state !== 'idle' || this.reconnectTimer === null) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.open();
  }

  private wakeWaiters(): void {
    while (this.waiters.length > 0 && this.canSend()) this.waiters.shift()!.wake();
  }

  private canSend(): boolean {
    return (
      this.state === 'open' &&
      this.ws !== null &&
      this.pending.size < (this.options.maxInFlight ?? 512) &&
      this.ws.bufferedAmount < (this.options.maxBufferedBytes ?? 16 * 1024 * 1024)
    );
  }

  private async waitForSlot(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    if (this.canSend()) return;
    if (this.state === 'closed') throw new QfsError('closed', 'client closed');
    if (this.waiters.length >= (this.options.maxQueued ?? 4096)) throw new QfsError('busy', `too many requests queued for ${this.options.url}`);
    if (this.state === 'idle' && this.reconnectTimer === null) this.open();
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        wake: () => {
          done();
          resolve();
        },
        fail: (e) => {
          done();
          reject(e);
        },
      };
      const onAbort = (): void => waiter.fail(toQfsError(signal!.reason));
      const timer = setTimeout(() => {
        const why = this.lastError ? this.lastError.message : 'not connected';
        waiter.fail(new QfsError(this.state === 'open' ? 'timeout' : 'unavailable', `${this.options.url}: ${why}`));
      }, Math.max(0, deadline - Date.now()));
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /**
   * Sends one request and resolves with the response body. `write` appends the
   * request's fields. Fails with the node's error code, `timeout`, or
   * `unavailable` when no connection could be made before the deadline.
   */
  async call(op: number, write: (e: Encoder) => void, opts: CallOptions = {}): Promise<Decoder> {
    // Node's timers overflow past 2^31-1 ms and would fire at once.
    const timeoutMs = Math.min(opts.timeoutMs ?? this.options.defaultTimeoutMs ?? 5000, 2 ** 31 - 1);
    const deadline = Date.now() + timeoutMs;
    opts.signal?.throwIfAborted();
    // Encode first: a bad argument fails at once with bad_request, not after waiting for a connection.
    const pooled = (opts.bodySizeHint ?? 0) >= POOLED_BODY ? bigFrames.take(REQUEST_HEADER_BYTES + opts.bodySizeHint!) : undefined;
    const e = requestEncoder({ id: 0, op, deadlineMs: 0, epoch: 0 }, opts.bodySizeHint, pooled);
    write(e);
    const frame = e.finish();
    // the pooled buffer goes back once ws has written the frame (not if the encoding outgrew it)
    const reuse = pooled !== undefined && frame.buffer === pooled.buffer && frame.byteOffset === pooled.byteOffset ? pooled : undefined;
    const tail = opts.tail !== undefined && opts.tail.length > 0 ? opts.tail : undefined;
    const frameBytes = frame.length + (tail?.length ?? 0);
    if (frameBytes > MAX_FRAME_BYTES) throw new QfsError('bad_request', `request of ${frameBytes} bytes exceeds the frame limit`);
    const waitUntil = this.state === 'open' || opts.connectWaitMs === undefined ? deadline : Math.min(deadline, Date.now() + opts.connectWaitMs);
    await this.waitForSlot(waitUntil, opts.signal);
    const ws = this.ws!;
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    // The header's id and remaining deadline are known only now.
    frame.writeUInt32BE(id, 1);
    frame.writeUInt32BE(Math.max(1, Math.min(0xffffffff, deadline - Date.now())), 6);
    frame.writeUInt32BE(opts.epoch ?? this.epoch, REQUEST_EPOCH_OFFSET);
    const heardBeforeSend = this.framesHeard;
    return new Promise<Decoder>((resolve, reject) => {
      const onAbort = (): void => {
        if (this.pending.delete(id)) {
          p.cleanup();
          reject(toQfsError(opts.signal!.reason));
        }
      };
      const p: Pending = {
        resolve,
        reject,
        timer: setTimeout(() => {
          if (this.pending.delete(id)) {
            p.cleanup();
            reject(new QfsError('timeout', `${this.options.url}: no answer within ${timeoutMs} ms`));
            if (this.framesHeard === heardBeforeSend) this.probe(ws);
          }
        }, Math.max(1, deadline - Date.now())),
        cleanup: () => {
          clearTimeout(p.timer);
          opts.signal?.removeEventListener('abort', onAbort);
          // A freed slot lets a queued request go.
          queueMicrotask(() => this.wakeWaiters());
        },
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, p);
      corkForTick(ws);
      const sent = (): void => {
        if (reuse) bigFrames.give(reuse);
        this.wakeWaiters();
      };
      if (tail === undefined) {
        ws.send(frame, { binary: true }, sent);
      } else {
        // Nothing can come between the two sends: one message on the wire.
        ws.send(frame, { binary: true, fin: false });
        ws.send(tail, { binary: true, fin: true }, sent);
      }
    });
  }

  /**
   * A call timed out and the node has sent nothing since it was made: a ping
   * asks whether the connection is still there. No pong (and no frame) within
   * PROBE_MS, and the connection is dropped: a node cut off (its packets
   * lost) otherwise keeps an open-looking connection for as long as TCP
   * retries, and whoever asks `isOpen` (a mover skipping nodes that are
   * down, say) keeps waiting on it. Calls on it fail as unavailable; the
   * client reconnects as after any close.
   */
  private probe(ws: WebSocket): void {
    if (this.probing || this.ws !== ws || this.state !== 'open') return;
    this.probing = true;
    const heardBeforePing = this.framesHeard;
    let answered = false;
    const onPong = (): void => {
      answered = true;
    };
    ws.once('pong', onPong);
    try {
      ws.ping();
    } catch {
      // closing already
    }
    setTimeout(() => {
      this.probing = false;
      ws.off('pong', onPong);
      if (answered || this.framesHeard !== heardBeforePing || this.ws !== ws) return;
      this.lastError = new QfsError('unavailable', `${this.options.url}: no answer, not even to a ping, in ${PROBE_MS} ms: connection dropped`);
      this.log.info({ reason: this.lastError.message }, 'dropping connection');
      ws.terminate();
    }, PROBE_MS).unref();
  }

  private onResponse(frame: Buffer): void {
    const { header, body } = decodeResponseHeader(frame);
    const p = this.pending.get(header.id);
    if (!p) return; // answered after its deadline: already rejected
    this.pending.delete(header.id);
    p.cleanup();
    if (header.status === 0) {
      p.resolve(body);
    } else {
      let message = 'error';
      try {
        message = body.str(MAX_ERROR_MESSAGE, 'error message');
      } catch {
        // keep the generic message; the status is what matters
      }
      p.reject(new QfsError(byteToErrorCode(header.status), message));
    }
  }

  close(): void {
    if (this.state === 'closed') return;
    const wasOpen = this.state === 'open';
    this.state = 'closed';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    for (const w of [...this.waiters]) w.fail(new QfsError('closed', 'client closed'));
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.cleanup();
      p.reject(new QfsError('closed', 'client closed'));
    }
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, 'client closed');
    if (wasOpen) {
      this.reportedUp = false;
      this.onStateChange?.(false);
    }
  }
}
