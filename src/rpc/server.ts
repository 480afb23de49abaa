// The accepting side: authenticates each connection, then decodes requests and
// runs them through an op table it knows nothing about. A frame that cannot be
// decoded closes that connection with a logged reason; a handler's error is sent
// back as a status. Bounded in-flight requests and outgoing bytes per connection.
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { Decoder, Encoder } from '../util/codec.js';
import {
  FrameType,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  decodeAuth,
  decodeRequestHeader,
  encodeAuthOk,
  encodeErrorResponse,
  encodeHello,
  frameType,
  responseEncoder,
} from './frame.js';
import { clientProof, newNonce, proofsEqual, serverProof } from './auth.js';
import { QfsError, errorCodeToByte, toQfsError, type ErrorCode } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { corkForTick } from './tick-cork.js';

export interface RequestContext {
  /** Aborted when the client's deadline passes or the connection closes. */
  readonly signal: AbortSignal;
  readonly deadline: number;
  readonly peer: string;
  /** The connection the request came on, to push unasked frames to it later (lease recalls). */
  readonly connection: PushTarget;
  /** The membership epoch the request was placed by (0: none). */
  readonly epoch: number;
}

/** A connection that can be sent unasked frames while it is open. */
export interface PushTarget {
  readonly open: boolean;
  push(frame: Buffer): void;
  /** Runs once when the connection closes. */
  whenClosed(fn: () => void): void;
}

/** One operation: decode (errors close the connection) and run (errors are replied). */
export interface OpHandler<Req = unknown> {
  readonly name: string;
  decode(body: Decoder): Req;
  run(req: Req, ctx: RequestContext, reply: Encoder): Promise<void> | void;
  /** Size hint for the reply buffer. */
  readonly replySize?: number;
}

export interface RpcObserver {
  request(op: string, status: ErrorCode | 'ok', bytesIn: number, bytesOut: number, seconds: number): void;
  connection(event: 'open' | 'auth_failed' | 'bad_frame' | 'close'): void;
}

export interface RpcServerOptions {
  server: HttpServer | HttpsServer;
  path: string;
  secret: Buffer;
  clusterName: string;
  ops: ReadonlyMap<number, OpHandler<any>>;
  log: Logger;
  observer?: RpcObserver;
  handshakeTimeoutMs?: number;
  maxInFlightPerConnection?: number;
  /** Outgoing bytes queued on a connection above which it stops reading requests. */
  maxBufferedBytes?: number;
}

/** WebSocket close codes we send (4000-4999 is the application range). */
export const CloseCode = {
  AuthFailed: 4001,
  BadFrame: 4002,
  HandshakeTimeout: 4003,
  ShuttingDown: 4004,
} as const;

const MAX_TIMER_MS = 2 ** 31 - 1;

export class RpcServer {
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<ServerConnection>();
  private closing = false;

  constructor(readonly options: RpcServerOptions) {
    this.wss = new WebSocketServer({
      server: options.server,
      path: options.path,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      clientTracking: false,
    });
    this.wss.on('connection', (ws, req) => this.accept(ws, req));
    this.wss.on('error', (err) => options.log.error({ err }, 'websocket server error'));
  }

  private accept(ws: WebSocket, req: IncomingMessage): void {
    if (this.closing) {
      ws.close(CloseCode.ShuttingDown, 'shutting down');
      return;
    }
    const conn = new ServerConnection(ws, `${req.socket.remoteAddress}:${req.socket.remotePort}`, this.options);
    this.connections.add(conn);
    ws.on('close', () => this.connections.delete(conn));
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  get inFlight(): number {
    let n = 0;
    for (const c of this.connections) n += c.inFlight;
    return n;
  }

  /** Stops accepting; waits (bounded) for in-flight requests, then closes every connection. */
  async close(graceMs = 5000): Promise<void> {
    this.closing = true;
    for (const c of this.connections) c.stopReading();
    const until = Date.now() + graceMs;
    while (this.inFlight > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    for (const c of this.connections) c.close(CloseCode.ShuttingDown, 'shutting down');
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }
}

class ServerConnection implements PushTarget {
  private state: 'hello-sent' | 'open' | 'closed' = 'hello-sent';
  private readonly nonce = newNonce();
  private readonly handshakeTimer: NodeJS.Timeout;
  private readonly log: Logger;
  /** Requests in flight by id; the abort controller exists only once a handler asked for its signal. */
  private readonly aborts = new Map<number, AbortController | null>();
  private readonly maxInFlight: number;
  private readonly maxBuffered: number;
  private stopped = false;
  private readonly closeListeners: Array<() => void> = [];
  inFlight = 0;

  get open(): boolean {
    return this.state === 'open';
  }

  push(frame: Buffer): void {
    if (this.state === 'open') this.send(frame);
  }

  whenClosed(fn: () => void): void {
    if (this.state === 'closed') fn();
    else this.closeListeners.push(fn);
  }

  constructor(
    private readonly ws: WebSocket,
    private readonly peer: string,
    private readonly opts: RpcServerOptions,
  ) {
    this.log = opts.log.child({ peer });
    this.maxInFlight = opts.maxInFlightPerConnection ?? 256;
    this.maxBuffered = opts.maxBufferedBytes ?? 32 * 1024 * 1024;
    opts.observer?.connection('open');
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    ws.on('close', () => this.onClose());
    ws.on('error', (err) => this.log.warn({ err: err.message }, 'connection error'));
    this.handshakeTimer = setTimeout(() => {
      if (this.state === 'hello-sent') this.reject(CloseCode.HandshakeTimeout, 'handshake timeout', 'auth_failed');
    }, opts.handshakeTimeoutMs ?? 5000);
    this.send(encodeHello(this.nonce, opts.clusterName));
  }

  private send(frame: Buffer): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    corkForTick(this.ws);
    this.ws.send(frame, { binary: true }, () => this.maybeResume());
    if (this.ws.bufferedAmount > this.maxBuffered) this.pauseReading();
  }

  private pauseReading(): void {
    if (!this.ws.isPaused) this.ws.pause();
  }

  private maybeResume(): void {
    if (
      !this.stopped &&
      this.ws.isPaused &&
      this.inFlight < this.maxInFlight &&
      this.ws.bufferedAmount <= this.maxBuffered / 2
    ) {
      this.ws.resume();
    }
  }

  stopReading(): void {
    this.stopped = true;
    this.pauseReading();
  }

  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ws.close(code, reason);
    // A peer that never answers the close handshake must not keep the socket.
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }

  private reject(code: number, reason: string, event: 'auth_failed' | 'bad_frame'): void {
    this.log.warn({ reason }, event === 'auth_failed' ? 'rejected unauthenticated peer' : 'closed connection on bad frame');
    this.opts.observer?.connection(event);
    this.close(code, reason);
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    if (this.state === 'closed') return;
    if (!isBinary || !Buffer.isBuffer(data)) {
      this.reject(CloseCode.BadFrame, 'text or fragmented frame', 'bad_frame');
      return;
    }
    try {
      const type = frameType(data);
      if (this.state === 'hello-sent') {
        if (type !== FrameType.Auth) throw new QfsError('auth', `frame type ${type} before authentication`);
        this.onAuth(data);
      } else if (type === FrameType.Request) {
        this.onRequest(data);
      } else {
        throw new QfsError('bad_request', `unexpected frame type ${type}`);
      }
    } catch (err) {
      const e = toQfsError(err);
      if (e.code === 'auth') this.reject(CloseCode.AuthFailed, e.message, 'auth_failed');
      else this.reject(CloseCode.BadFrame, e.message, 'bad_frame');
    }
  }

  private onAuth(frame: Buffer): void {
    let auth;
    try {
      auth = decodeAuth(frame);
    } catch (err) {
      throw new QfsError('auth', `malformed auth frame: ${(err as Error).message}`);
    }
    if (auth.version !== PROTOCOL_VERSION) throw new QfsError('auth', `client speaks protocol ${auth.version}, this node ${PROTOCOL_VERSION}: upgrade nodes and mounts together`);
    const expected = clientProof(this.opts.secret, this.opts.clusterName, this.nonce, auth.nonce);
    if (!proofsEqual(expected, auth.proof)) throw new QfsError('auth', 'wrong cluster secret');
    clearTimeout(this.handshakeTimer);
    this.state = 'open';
    this.send(encodeAuthOk(serverProof(this.opts.secret, this.opts.clusterName, this.nonce, auth.nonce)));
    this.log.debug('peer authenticated');
  }

  private onRequest(frame: Buffer): void {
    const { header, body } = decodeRequestHeader(frame);
    const handler = this.opts.ops.get(header.op);
    if (!handler) throw new QfsError('bad_request', `unknown op ${header.op}`);
    if (this.aborts.has(header.id)) throw new QfsError('bad_request', `request id ${header.id} already in flight`);
    const req = handler.decode(body); // throws → bad frame → connection closed
    void this.run(handler, header.id, header.deadlineMs, header.epoch, req, frame.length);
  }

  private async run(handler: OpHandler, id: number, deadlineMs: number, epoch: number, req: unknown, bytesIn: number): Promise<void> {
    const started = process.hrtime.bigint();
    // Most handlers never look at the signal: its controller and deadline timer
    // are made on first use (they were a few percent of a node's CPU).
    let timer: NodeJS.Timeout | undefined;
    const aborts = this.aborts;
    const ctx = {
      deadline: Date.now() + deadlineMs,
      peer: this.peer,
      connection: this as PushTarget,
      epoch,
      get signal(): AbortSignal {
        let abort = aborts.get(id);
        if (!abort) {
          const made = new AbortController();
          abort = made;
          aborts.set(id, made);
          // Node's timers overflow past 2^31-1 ms and would fire at once.
          timer = setTimeout(() => made.abort(new QfsError('timeout', 'deadline passed on the node')), Math.min(deadlineMs, MAX_TIMER_MS));
        }
        return abort.signal;
      },
    };
    this.aborts.set(id, null);
    this.inFlight++;
    if (this.inFlight >= this.maxInFlight) this.pauseReading();
    let frame: Buffer;
    let status: ErrorCode | 'ok' = 'ok';
    try {
      const reply = responseEncoder({ id, status: 0 }, handler.replySize);
      await handler.run(req, ctx, reply);
      frame = reply.finish();
    } catch (err) {
      const e = toQfsError(err);
      status = e.code;
      if (e.code === 'internal') this.log.error({ err, op: handler.name }, 'request failed');
      frame = encodeErrorResponse(id, errorCodeToByte(e.code), e.message);
    } finally {
      clearTimeout(timer);
      this.aborts.delete(id);
      this.inFlight--;
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    this.opts.observer?.request(handler.name, status, bytesIn, frame.length, seconds);
    this.send(frame);
    this.maybeResume();
  }

  private onClose(): void {
    this.state = 'closed';
    for (const fn of this.closeListeners.splice(0)) fn();
    clearTimeout(this.handshakeTimer);
    for (const a of this.aborts.values()) a?.abort(new QfsError('closed', 'connection closed'));
    this.opts.observer?.connection('close');
  }
}
