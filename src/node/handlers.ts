// The node's op table: each wire op decoded by its message codec and run
// against this node's stores. No filesystem meaning here, only stores.
import type { OpHandler, PushTarget, RequestContext } from '../rpc/server.js';
import { PushKind, encodePush } from '../rpc/frame.js';
import { QfsError, isQfsError, toQfsError } from '../util/errors.js';
import type { ScopeCall } from '../util/lease.js';
import * as M from '../rpc/messages.js';
import type { ChunkStore } from '../store/chunk-store.js';
import type { RecordStore } from '../store/record-store.js';
import type { MembershipKeeper } from './membership-keeper.js';
import { sharedPageDigest } from '../util/range-digest.js';
import type { SharedDigests } from './shared-digests.js';
import type { DigestMark } from '../util/range-digest.js';

export interface NodeStores {
  nodeId: string;
  records: RecordStore;
  chunks: ChunkStore;
  membership: MembershipKeeper;
  /** Self-heal's bucket digests, kept as records and chunks change. */
  recordDigests: SharedDigests<DigestMark>;
  chunkDigests: SharedDigests<'held'>;
  stat(): Promise<M.NodeStat>;
}

function handler<Req>(name: string, h: Omit<OpHandler<Req>, 'name'>): OpHandler<Req> {
  return { name, ...h };
}

/**
 * Ops whose requests are placed by a membership: answered only under the
 * epoch this node holds (docs/architecture.md, "Membership"). Record calls,
 * because their quorums depend on it; chunk puts and gets, because a chunk
 * written under an old epoch after the mover listed this node would be missed,
 * and a reader under an old one looks for copies where they may be gone.
 * Listings, `has`, sweeps, deletes and verification serve maintenance tools,
 * which look at every node whatever the placement.
 */
const PLACED_OPS: ReadonlySet<number> = new Set([
  M.Op.RecordPrepare,
  M.Op.RecordAccept,
  M.Op.RecordRead,
  M.Op.RecordReadMany,
  M.Op.RecordScan,
  M.Op.RecordPurge,
  M.Op.RecordLearn,
  M.Op.RecordLearnMany,
  M.Op.RecordAcceptMany,
  M.Op.RecordDrop,
  M.Op.RecordDigest,
  M.Op.RecordBucketDigests,
  M.Op.RecordBucketScan,
  M.Op.ChunkBucketDigests,
  M.Op.ChunkPut,
  M.Op.ChunkPutDeferred,
  M.Op.ChunkGet,
  M.Op.ChunkBlocks,
]);

function fenceByEpoch<Req>(h: OpHandler<Req>, membership: MembershipKeeper): OpHandler<Req> {
  return {
    ...h,
    run(req, ctx, reply) {
      membership.admit(ctx.epoch);
      return h.run(req, ctx, reply);
    },
  };
}

/** Recalls at most this often per (holder, lease): a reader retrying in a loop must not flood the holder. */
const RECALL_EVERY_MS = 20;
const MAX_RECALLS_TRACKED = 10_000;

/**
 * Which connection each lease session last called from, so that a reader
 * refused by a held scope can have the holder asked to give it back (a PUSH
 * frame on the holder's own connection). Entries go with their connection.
 */
export class LeaseSessions {
  private readonly byId = new Map<string, PushTarget>();
  private readonly lastRecall = new Map<string, number>();
  recallsSent = 0;

  seen(scope: ScopeCall | undefined, ctx: RequestContext): void {
    if (!scope || this.byId.get(scope.session) === ctx.connection) return;
    const conn = ctx.connection;
    this.byId.set(scope.session, conn);
    conn.whenClosed(() => {
      if (this.byId.get(scope.session) === conn) this.byId.delete(scope.session);
    });
  }

  recall(holder: string, lease: Buffer): void {
    const id = `${holder}\u0000${lease.toString('latin1')}`;
    const now = Date.now();
    if (now - (this.lastRecall.get(id) ?? 0) < RECALL_EVERY_MS) return;
    const conn = this.byId.get(holder);
    if (!conn?.open) return;
    if (this.lastRecall.size >= MAX_RECALLS_TRACKED) this.lastRecall.clear();
    this.lastRecall.set(id, now);
    this.recallsSent++;
    conn.push(encodePush(PushKind.LeaseRecall, (e) => e.bytes(lease)));
  }
}

export function nodeOps(s: NodeStores, sessions = new LeaseSessions()): Map<number, OpHandler<any>> {
  /** A read refused because another session holds its scope asks that holder to give it back. */
  const recallIfFenced = (err: unknown, scope: ScopeCall | undefined): void => {
    if (scope && isQfsError(err, 'fenced')) {
      const holder = s.records.leaseHolder(scope);
      if (holder !== null && holder !== scope.session) sessions.recall(holder, scope.lease);
    }
  };
  /** Recalls the holder as above, then fails the read. */
  const refusedRead = (err: unknown, scope: ScopeCall | undefined): never => {
    recallIfFenced(err, scope);
    throw err;
  };
  const ops: Array<[number, OpHandler<any>]> = [
    [M.Op.Ping, handler('ping', { decode: M.EmptyMessage.decode, run() {} })],
    [
      M.Op.Stat,
      handler('stat', {
        decode: M.EmptyMessage.decode,
        async run(_req, _ctx, reply) {
          M.StatReply.encode(reply, await s.stat());
        },
      }),
    ],
    [
      M.Op.RecordPrepare,
      handler('record_prepare', {
        decode: M.RecordPrepare.decode,
        async run(r, ctx, reply) {
          sessions.seen(r.scope, ctx);
          M.VerdictReply.encode(reply, await s.records.prepare(r.key, r.ballot, r.scope));
        },
      }),
    ],
    [
      M.Op.RecordAccept,
      handler('record_accept', {
        decode: M.RecordAccept.decode,
        async run(r, ctx, reply) {
          sessions.seen(r.scope, ctx);
          M.VerdictReply.encode(reply, await s.records.accept(r.key, r.ballot, r.value, r.promiseNext, r.scope));
        },
      }),
    ],
    [
      M.Op.RecordAcceptMany,
      handler('record_accept_many', {
        decode: M.RecordAcceptMany.decode,
        async run(items, ctx, reply) {
          // Each judged alone, all in this turn: the store's group commit writes them in one transaction.
          const answers = await Promise.all(
            items.map(async (r): Promise<M.VerdictOrError> => {
              try {
                sessions.seen(r.scope, ctx);
                return await s.records.accept(r.key, r.ballot, r.value, r.promiseNext, r.scope);
              } catch (err) {
                return toQfsError(err);
              }
            }),
          );
          M.VerdictsReply.encode(reply, answers);
        },
        replySize: 16 * 1024,
      }),
    ],
    [
      M.Op.RecordRead,
      handler('record_read', {
        decode: M.RecordRead.decode,
        run(r, ctx, reply) {
          sessions.seen(r.scope, ctx);
          let state;
          try {
            state = s.records.read(r.key, r.scope);
          } catch (err) {
            refusedRead(err, r.scope);
          }
          M.StateReply.encode(reply, state!);
        },
      }),
    ],
    [
      M.Op.RecordReadMany,
      handler('record_read_many', {
        decode: M.RecordReadMany.decode,
        run(items, ctx, reply) {
          // Each answered alone, as record_read would answer it (a refused one recalls its holder).
          const answers = items.map((r): M.StateOrError => {
            sessions.seen(r.scope, ctx);
            try {
              return s.records.read(r.key, r.scope);
            } catch (err) {
              recallIfFenced(err, r.scope);
              return toQfsError(err);
            }
          });
          M.StatesReply.encode(reply, answers);
        },
        replySize: 16 * 1024,
      }),
    ],
    [
      M.Op.RecordScan,
      handler('record_scan', {
        decode: M.RecordScan.decode,
        run(r, ctx, reply) {
          sessions.seen(r.scope, ctx);
          let page;
          try {
            page = s.records.scan(r.start, r.end, r.limit, r.scope, r.withLost ?? false);
          } catch (err) {
            refusedRead(err, r.scope?.settling ? undefined : r.scope);
          }
          M.ScanReplyCodec.encode(reply, page!);
        },
        replySize: 4096,
      }),
    ],
    [
      M.Op.RecordDigest,
      handler('record_digest', {
        decode: M.RecordDigest.decode,
        run(r, _ctx, reply) {
          M.DigestReplyCodec.encode(reply, digestRange(s, r));
        },
      }),
    ],
    [
      M.Op.RecordBucketDigests,
      handler('record_bucket_digests', {
        decode: M.BucketDigestsRequestCodec.decode,
        async run(r, _ctx, reply) {
          M.BucketDigestsReplyCodec.encode(reply, await s.recordDigests.forPeer(r.peer));
        },
        replySize: 24 * 1024,
      }),
    ],
    [
      M.Op.RecordBucketScan,
      handler('record_bucket_scan', {
        decode: M.BucketScanRequestCodec.decode,
        run(r, _ctx, reply) {
          M.ScanReplyCodec.encode(reply, s.records.scanBucket(r.bucket, r.start, r.limit));
        },
        replySize: 4096,
      }),
    ],
    [
      M.Op.RecordPurge,
      handler('record_purge', {
        decode: M.RecordPurge.decode,
        async run(r, _ctx, reply) {
          M.BoolReply.encode(reply, await s.records.purge(r.key, r.ballot));
        },
      }),
    ],
    [
      M.Op.RecordLearn,
      handler('record_learn', {
        decode: M.RecordLearn.decode,
        async run(r, _ctx, reply) {
          M.BoolReply.encode(reply, await s.records.learn(r.key, r.ballot));
        },
      }),
    ],
    [
      M.Op.RecordLearnMany,
      handler('record_learn_many', {
        decode: M.RecordLearnMany.decode,
        async run(items, _ctx, reply) {
          // Each judged alone, all at once: the store's group commit writes them together.
          M.BoolsReply.encode(reply, await Promise.all(items.map((it) => s.records.learn(it.key, it.ballot))));
        },
        replySize: 4096,
      }),
    ],
    [
      M.Op.RecordDrop,
      handler('record_drop', {
        decode: M.RecordDrop.decode,
        async run(keys, _ctx, reply) {
          // Only once a change is over: during one, a copy here may still be needed by a quorum of the old node set.
          if (s.membership.membership?.transition) throw new QfsError('busy', 'a membership change is in progress: record copies are dropped only after it');
          let dropped = 0;
          for (const key of keys) if (await s.records.drop(key)) dropped++;
          M.U53Reply.encode(reply, dropped);
        },
      }),
    ],
    [
      M.Op.ChunkPut,
      handler('chunk_put', {
        decode: M.ChunkPut.decode,
        async run(r, _ctx, reply) {
          const result = await s.chunks.put(r.id, r.bytes);
          reply.u8(result === 'exists' ? M.PUT_EXISTS : M.PUT_STORED);
        },
      }),
    ],
    [
      M.Op.ChunkPutDeferred,
      handler('chunk_put_deferred', {
        decode: M.ChunkPut.decode,
        async run(r, _ctx, reply) {
          const result = await s.chunks.put(r.id, r.bytes, 'defer');
          reply.u8(result === 'exists' ? M.PUT_EXISTS : M.PUT_STORED);
        },
      }),
    ],
    [
      M.Op.ChunkGet,
      handler('chunk_get', {
        decode: M.ChunkGet.decode,
        async run(r, _ctx, reply) {
          // read straight into the reply frame: no second copy of the chunk
          await s.chunks.get(r.id, r.offset, r.length, (n) => reply.tail(n));
        },
        replySize: 1024 * 1024,
      }),
    ],
    [
      M.Op.ChunkBlocks,
      handler('chunk_blocks', {
        decode: M.ChunkBlocks.decode,
        async run(r, _ctx, reply) {
          M.ChunkBlocksReply.encode(reply, await s.chunks.getBlocks(r.id, r.offset, r.length, r.withLeaves));
        },
        replySize: 128 * 1024,
      }),
    ],
    [
      M.Op.ChunkHas,
      handler('chunk_has', {
        decode: M.ChunkIdList.decode,
        async run(ids, _ctx, reply) {
          M.BoolListReply.encode(reply, await s.chunks.has(ids));
        },
      }),
    ],
    [
      M.Op.ChunkBucketDigests,
      handler('chunk_bucket_digests', {
        decode: M.BucketDigestsRequestCodec.decode,
        async run(r, _ctx, reply) {
          M.BucketDigestsReplyCodec.encode(reply, await s.chunkDigests.forPeer(r.peer));
        },
        replySize: 24 * 1024,
      }),
    ],
    [
      M.Op.ChunkBucketList,
      handler('chunk_bucket_list', {
        decode: M.ChunkBucketListCodec.decode,
        async run(r, _ctx, reply) {
          M.ChunkIdList.encode(reply, await s.chunks.listBucket(r.bucket, r.after, r.limit));
        },
      }),
    ],
    [
      M.Op.ChunkList,
      handler('chunk_list', {
        decode: M.ChunkList.decode,
        async run(r, _ctx, reply) {
          M.ChunkIdList.encode(reply, await s.chunks.list(r.after, r.limit));
        },
        replySize: 4096,
      }),
    ],
    [
      M.Op.ChunkDelete,
      handler('chunk_delete', {
        decode: M.ChunkIdRequest.decode,
        async run(id, _ctx, reply) {
          M.BoolReply.encode(reply, await s.chunks.delete(id));
        },
      }),
    ],
    [
      M.Op.ChunkSweep,
      handler('chunk_sweep', {
        decode: M.ChunkSweep.decode,
        async run(r, _ctx, reply) {
          M.U53Reply.encode(reply, await s.chunks.sweep(r.id, r.minAgeMs));
        },
      }),
    ],
    [
      M.Op.MembershipGet,
      handler('membership_get', {
        decode: M.EmptyMessage.decode,
        run(_req, _ctx, reply) {
          M.MembershipReply.encode(reply, s.membership.bytes);
        },
        replySize: 4096,
      }),
    ],
    [
      M.Op.MembershipInstall,
      handler('membership_install', {
        decode: M.MembershipInstall.decode,
        async run(m, _ctx, reply) {
          M.U53Reply.encode(reply, await s.membership.install(m));
        },
      }),
    ],
    [
      M.Op.ChunkVerify,
      handler('chunk_verify', {
        decode: M.ChunkIdRequest.decode,
        async run(id, _ctx, reply) {
          M.VerifyReply.encode(reply, await s.chunks.verify(id));
        },
      }),
    ],
  ];
  return new Map(ops.map(([op, h]) => [op, PLACED_OPS.has(op) ? fenceByEpoch(h, s.membership) : h]));
}

/**
 * Self-heal's range digest (src/util/range-digest.ts): the records in the
 * range that this node and `peer` both hold under this node's membership
 * (the call is placed, so the asker counted by the same one).
 */
export function digestRange(s: NodeStores, r: M.DigestRequest): M.DigestReply {
  const m = s.membership.membership;
  if (!m) throw new QfsError('epoch_ahead', 'this node knows no membership yet');
  const page = s.records.scan(r.start, r.end, r.limit, undefined, true);
  return { ...sharedPageDigest(m, s.nodeId, r.peer, page), next: page.next };
}
