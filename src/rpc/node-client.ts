// Typed calls to one storage node over an RpcClient.
import { RpcClient, type CallOptions, type RpcClientOptions } from './client.js';
import type { Decoder, Encoder } from '../util/codec.js';
import * as M from './messages.js';
import { PushKind } from './frame.js';
import type { ScopeCall } from '../util/lease.js';
import type { Ballot } from '../util/ballot.js';
import type { ChunkId } from '../util/ids.js';
import type { AcceptorState, RecordValue } from '../util/paxos.js';

interface RequestCodec<T> {
  encode(e: Encoder, v: T): void;
}
interface ReplyCodec<T> {
  decode(d: Decoder): T;
}

export class NodeClient {
  readonly rpc: RpcClient;

  constructor(options: RpcClientOptions) {
    this.rpc = new RpcClient(options);
  }

  /** Calls `fn` with the lease key whenever the node asks this client to give a scope lease back. */
  onLeaseRecall(fn: (lease: Buffer) => void): void {
    this.rpc.onPush = (kind, body) => {
      if (kind !== PushKind.LeaseRecall) return; // a kind this version does not know: ignored
      const lease = body.bytes(M.MAX_LEASE_KEY_BYTES, 'lease key');
      body.end();
      fn(lease);
    };
  }

  get url(): string {
    return this.rpc.options.url;
  }

  private async call<Req, Res>(op: number, req: RequestCodec<Req>, value: Req, res: ReplyCodec<Res>, opts?: CallOptions): Promise<Res> {
    const d = await this.rpc.call(op, (e) => req.encode(e, value), opts);
    return res.decode(d);
  }

  ping(opts?: CallOptions): Promise<void> {
    return this.call(M.Op.Ping, M.EmptyMessage, undefined, M.EmptyMessage, opts);
  }

  stat(opts?: CallOptions): Promise<M.NodeStat> {
    return this.call(M.Op.Stat, M.EmptyMessage, undefined, M.StatReply, opts);
  }

  prepare(key: Buffer, ballot: Ballot, opts?: CallOptions & { scope?: ScopeCall | undefined }): Promise<M.Verdict> {
    return this.call(M.Op.RecordPrepare, M.RecordPrepare, { key, ballot, scope: opts?.scope }, M.VerdictReply, opts);
  }

  accept(key: Buffer, ballot: Ballot, value: RecordValue, opts?: CallOptions & { promiseNext?: boolean; scope?: ScopeCall | undefined }): Promise<M.Verdict> {
    const size = value.kind === 'value' ? value.bytes.length + key.length + 64 : 128;
    const req = { key, ballot, value, promiseNext: opts?.promiseNext ?? false, scope: opts?.scope };
    return this.call(M.Op.RecordAccept, M.RecordAccept, req, M.VerdictReply, { bodySizeHint: size, ...opts });
  }

  read(key: Buffer, opts?: CallOptions & { scope?: ScopeCall | undefined }): Promise<AcceptorState> {
    return this.call(M.Op.RecordRead, M.RecordRead, { key, scope: opts?.scope }, M.StateReply, opts);
  }

  /** Reads of several keys in one frame; one answer per item, as `read` gives (an error answer is that item's error). */
  readMany(items: readonly M.ReadRequest[], opts?: CallOptions): Promise<M.StateOrError[]> {
    const size = items.reduce((n, r) => n + r.key.length + 64, 8);
    return this.call(M.Op.RecordReadMany, M.RecordReadMany, items, M.StatesReply, { bodySizeHint: size, ...opts });
  }

  /** `withLost`: keys whose stored state fails its checksum are listed in the reply instead of failing the page. */
  scan(start: Buffer, end: Buffer | null, limit: number, opts?: CallOptions & { scope?: ScopeCall | undefined; withLost?: boolean }): Promise<M.ScanReply> {
    const req: M.ScanRequest = { start, end, limit, scope: opts?.scope };
    if (opts?.withLost) req.withLost = true;
    return this.call(M.Op.RecordScan, M.RecordScan, req, M.ScanReplyCodec, opts);
  }

  /** Self-heal's bucket digests of the records this node and `peer` both hold (src/util/range-digest.ts, "Buckets"). */
  bucketDigests(peer: string, opts?: CallOptions): Promise<M.BucketDigestsReply> {
    return this.call(M.Op.RecordBucketDigests, M.BucketDigestsRequestCodec, { peer }, M.BucketDigestsReplyCodec, opts);
  }

  /** Committed states of one bucket's keys from `start` on, lost keys listed (self-heal). */
  scanBucket(bucket: number, start: Buffer, limit: number, opts?: CallOptions): Promise<M.ScanReply> {
    return this.call(M.Op.RecordBucketScan, M.BucketScanRequestCodec, { bucket, start, limit }, M.ScanReplyCodec, opts);
  }

  /** Self-heal's digest of the records in [start, end) this node and `peer` both hold (src/util/range-digest.ts). */
  digest(start: Buffer, end: Buffer | null, limit: number, peer: string, opts?: CallOptions): Promise<M.DigestReply> {
    return this.call(M.Op.RecordDigest, M.RecordDigest, { start, end, limit, peer }, M.DigestReplyCodec, opts);
  }

  purge(key: Buffer, ballot: Ballot, opts?: CallOptions): Promise<boolean> {
    return this.call(M.Op.RecordPurge, M.RecordPurge, { key, ballot }, M.BoolReply, opts);
  }

  learn(key: Buffer, ballot: Ballot, opts?: CallOptions): Promise<boolean> {
    return this.call(M.Op.RecordLearn, M.RecordLearn, { key, ballot }, M.BoolReply, opts);
  }

  /** Accepts of several keys in one frame; one answer per item, a verdict or the error that accept alone would have got. */
  acceptMany(items: readonly M.AcceptRequest[], opts?: CallOptions): Promise<M.VerdictOrError[]> {
    const size = items.reduce((n, r) => n + (r.value.kind === 'value' ? r.value.bytes.length : 0) + r.key.length + 64, 8);
    return this.call(M.Op.RecordAcceptMany, M.RecordAcceptMany, items, M.VerdictsReply, { bodySizeHint: size, ...opts });
  }

  /** Learns of several keys in one frame; one answer per item, as `learn` gives. */
  learnMany(items: readonly M.KeyBallot[], opts?: CallOptions): Promise<boolean[]> {
    return this.call(M.Op.RecordLearnMany, M.RecordLearnMany, items, M.BoolsReply, opts);
  }

  /** Forgets this node's copies of `keys` (after a membership change moved them elsewhere); how many went. */
  dropRecords(keys: readonly Buffer[], opts?: CallOptions): Promise<number> {
    return this.call(M.Op.RecordDrop, M.RecordDrop, keys, M.U53Reply, opts);
  }

  /** `check: 'defer'`: the node stores the bytes without hashing them (ChunkStore.put says when it checks them). */
  async putChunk(id: ChunkId, bytes: Buffer, opts?: CallOptions, check: 'verify' | 'defer' = 'verify'): Promise<'stored' | 'exists'> {
    const d = await this.rpc.call(check === 'verify' ? M.Op.ChunkPut : M.Op.ChunkPutDeferred, (e) => M.ChunkPut.encodeHead(e, id), { bodySizeHint: 40, ...opts, tail: bytes });
    const v = d.u8('put result');
    d.end();
    return v === M.PUT_EXISTS ? 'exists' : 'stored';
  }

  async getChunk(id: ChunkId, offset = 0, length = 0xffffffff, opts?: CallOptions): Promise<Buffer> {
    const d = await this.rpc.call(M.Op.ChunkGet, (e) => M.ChunkGet.encode(e, { id, offset, length: Math.min(length, 0xffffffff) }), opts);
    return d.rest();
  }

  async getBlocks(id: ChunkId, offset: number, length: number, withLeaves: boolean, opts?: CallOptions): Promise<M.ChunkBlocksResult> {
    const d = await this.rpc.call(M.Op.ChunkBlocks, (e) => M.ChunkBlocks.encode(e, { id, offset, length: Math.min(length, 0xffffffff), withLeaves }), opts);
    return M.ChunkBlocksReply.decode(d);
  }

  hasChunks(ids: readonly ChunkId[], opts?: CallOptions): Promise<boolean[]> {
    return this.call(M.Op.ChunkHas, M.ChunkIdList, ids, M.BoolListReply, opts);
  }

  /** Self-heal's bucket digests of the chunks this node and `peer` both should hold. */
  chunkBucketDigests(peer: string, opts?: CallOptions): Promise<M.BucketDigestsReply> {
    return this.call(M.Op.ChunkBucketDigests, M.BucketDigestsRequestCodec, { peer }, M.BucketDigestsReplyCodec, opts);
  }

  /** Chunk ids of one bucket after `after`, ascending. */
  listChunkBucket(bucket: number, after: ChunkId | null, limit: number, opts?: CallOptions): Promise<ChunkId[]> {
    return this.call(M.Op.ChunkBucketList, M.ChunkBucketListCodec, { bucket, after, limit }, M.ChunkIdList, opts);
  }

  listChunks(after: ChunkId | null, limit: number, opts?: CallOptions): Promise<ChunkId[]> {
    return this.call(M.Op.ChunkList, M.ChunkList, { after, limit }, M.ChunkIdList, opts);
  }

  deleteChunk(id: ChunkId, opts?: CallOptions): Promise<boolean> {
    return this.call(M.Op.ChunkDelete, M.ChunkIdRequest, id, M.BoolReply, opts);
  }

  /** Deletes the chunk if this node stored it at least `minAgeMs` ago; the bytes freed. */
  sweepChunk(id: ChunkId, minAgeMs: number, opts?: CallOptions): Promise<number> {
    return this.call(M.Op.ChunkSweep, M.ChunkSweep, { id, minAgeMs }, M.U53Reply, opts);
  }

  verifyChunk(id: ChunkId, opts?: CallOptions): Promise<M.VerifyResult> {
    return this.call(M.Op.ChunkVerify, M.ChunkIdRequest, id, M.VerifyReply, opts);
  }

  /** The membership the node has learned (encoded), or null before any. */
  getMembership(opts?: CallOptions): Promise<Buffer | null> {
    return this.call(M.Op.MembershipGet, M.EmptyMessage, undefined, M.MembershipReply, opts);
  }

  /** Hands the node a membership (encoded); it keeps it when newer. The epoch the node holds afterwards. */
  installMembership(membership: Buffer, opts?: CallOptions): Promise<number> {
    return this.call(M.Op.MembershipInstall, M.MembershipInstall, membership, M.U53Reply, { bodySizeHint: membership.length + 8, ...opts });
  }

  close(): void {
    this.rpc.close();
  }
}
