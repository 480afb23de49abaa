// Frame layout. Every WebSocket binary message is exactly one frame:
//
//   HELLO     u8 type=1 | u8 version | 32 B server nonce | str cluster name      server → client
//   AUTH      u8 type=2 | u8 version | 32 B client nonce | 32 B client proof     client → server
//   AUTH_OK   u8 type=3 | 32 B server proof                                      server → client
//   REQUEST   u8 type=4 | u32 id | u8 op | u32 deadline ms | u32 epoch | body     client → server
//   RESPONSE  u8 type=5 | u32 id | u8 status | body (status≠0: str message)      server → client
//   PUSH      u8 type=6 | u16 kind | body (unasked: a lease recall)               server → client
//
// The body's fields are defined per op in messages.ts; chunk bytes travel raw as
// the frame's tail.
import { Decoder, Encoder } from '../util/codec.js';
import { QfsError } from '../util/errors.js';
import { MAX_CHUNK_BYTES } from '../util/paxos.js';

// 2: record states carry lease tags and settled terms, record calls a scope, and learn (scope leases).
// 3: every request carries the epoch of the membership its sender placed it by (0: none).
export const PROTOCOL_VERSION = 5;
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
/** A chunk plus its header fits; nothing larger is ever read off a socket. */
export const MAX_FRAME_BYTES = MAX_CHUNK_BYTES + 64 * 1024;
export const MAX_CLUSTER_NAME = 128;
export const MAX_ERROR_MESSAGE = 1024;

export const enum FrameType {
  Hello = 1,
  Auth = 2,
  AuthOk = 3,
  Request = 4,
  Response = 5,
  Push = 6,
}

/** What a PUSH frame tells the client. */
export const PushKind = {
  /** Give the lease back: another session wants the scope (body: the lease key, u32-prefixed). */
  LeaseRecall: 1,
} as const;

export function encodePush(kind: number, body: (e: Encoder) => void): Buffer {
  const e = new Encoder(64).u8(FrameType.Push).u16(kind);
  body(e);
  return e.finish();
}

export function decodePushHeader(frame: Buffer): { kind: number; body: Decoder } {
  const d = new Decoder(frame);
  d.u8('type');
  return { kind: d.u16('push kind'), body: d };
}

export const REQUEST_HEADER_BYTES = 1 + 4 + 1 + 4 + 4;
/** Where a request frame's epoch sits (the client writes it when the request is sent). */
export const REQUEST_EPOCH_OFFSET = 10;
export const RESPONSE_HEADER_BYTES = 1 + 4 + 1;

export interface RequestHeader {
  id: number;
  op: number;
  deadlineMs: number;
  /**
   * The membership epoch the sender placed this request by (docs/architecture.md,
   * "Membership"); 0 from a caller that places nothing (status, ping).
   */
  epoch: number;
}

export interface ResponseHeader {
  id: number;
  status: number;
}

export function frameType(frame: Buffer): number {
  if (frame.length < 1) throw new QfsError('bad_request', 'empty frame');
  return frame[0]!;
}

export function encodeHello(nonce: Buffer, clusterName: string): Buffer {
  return new Encoder(64).u8(FrameType.Hello).u8(PROTOCOL_VERSION).raw(nonce).str(clusterName).finish();
}

export function decodeHello(frame: Buffer): { version: number; nonce: Buffer; clusterName: string } {
  const d = new Decoder(frame, 1);
  const version = d.u8('version');
  const nonce = d.raw(NONCE_BYTES, 'nonce');
  const clusterName = d.str(MAX_CLUSTER_NAME, 'cluster name');
  d.end();
  return { version, nonce, clusterName };
}

export function encodeAuth(nonce: Buffer, proof: Buffer): Buffer {
  return new Encoder(80).u8(FrameType.Auth).u8(PROTOCOL_VERSION).raw(nonce).raw(proof).finish();
}

export function decodeAuth(frame: Buffer): { version: number; nonce: Buffer; proof: Buffer } {
  const d = new Decoder(frame, 1);
  const version = d.u8('version');
  const nonce = d.raw(NONCE_BYTES, 'nonce');
  const proof = d.raw(PROOF_BYTES, 'proof');
  d.end();
  return { version, nonce, proof };
}

export function encodeAuthOk(proof: Buffer): Buffer {
  return new Encoder(40).u8(FrameType.AuthOk).raw(proof).finish();
}

export function decodeAuthOk(frame: Buffer): { proof: Buffer } {
  const d = new Decoder(frame, 1);
  const proof = d.raw(PROOF_BYTES, 'proof');
  d.end();
  return { proof };
}

/** Starts a request frame (in `into` when given); the caller appends the body and calls finish(). */
export function requestEncoder(header: RequestHeader, bodySizeHint = 64, into?: Buffer): Encoder {
  return new Encoder(into ?? REQUEST_HEADER_BYTES + bodySizeHint)
    .u8(FrameType.Request)
    .u32(header.id)
    .u8(header.op)
    .u32(Math.max(0, Math.min(0xffffffff, Math.round(header.deadlineMs))))
    .u32(header.epoch);
}

export function decodeRequestHeader(frame: Buffer): { header: RequestHeader; body: Decoder } {
  const d = new Decoder(frame, 1);
  const header = { id: d.u32('request id'), op: d.u8('op'), deadlineMs: d.u32('deadline'), epoch: d.u32('epoch') };
  return { header, body: d };
}

export function responseEncoder(header: ResponseHeader, bodySizeHint = 64): Encoder {
  return new Encoder(RESPONSE_HEADER_BYTES + bodySizeHint).u8(FrameType.Response).u32(header.id).u8(header.status);
}

export function encodeErrorResponse(id: number, status: number, message: string): Buffer {
  const m = Buffer.from(message, 'utf8').subarray(0, MAX_ERROR_MESSAGE).toString('utf8');
  return responseEncoder({ id, status }).str(m).finish();
}

export function decodeResponseHeader(frame: Buffer): { header: ResponseHeader; body: Decoder } {
  const d = new Decoder(frame, 1);
  const header = { id: d.u32('response id'), status: d.u8('status') };
  return { header, body: d };
}
