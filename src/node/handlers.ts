// The node's op table: each wire op decoded by its message codec and run
// against this node's stores. No filesystem meaning here, only stores.
import type { OpHandler } from '../rpc/server.js';
import * as M from '../rpc/messages.js';
import type { ChunkStore } from '../store/chunk-store.js';
import type { RecordStore } from '../store/record-store.js';

export interface NodeStores {
  records: RecordStore;
  chunks: ChunkStore;
  stat(): Promise<M.NodeStat>;
}

function handler<Req>(name: string, h: Omit<OpHandler<Req>, 'name'>): OpHandler<Req> {
  return { name, ...h };
}

export function nodeOps(s: NodeStores): Map<number, OpHandler<any>> {
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
        async run(r, _ctx, reply) {
          M.VerdictReply.encode(reply, await s.records.prepare(r.key, r.ballot, r.scope));
        },
      }),
    ],
    [
      M.Op.RecordAccept,
      handler('record_accept', {
        decode: M.RecordAccept.decode,
        async run(r, _ctx, reply) {
          M.VerdictReply.encode(reply, await s.records.accept(r.key, r.ballot, r.value, r.promiseNext, r.scope));
        },
      }),
    ],
    [
      M.Op.RecordRead,
      handler('record_read', {
        decode: M.RecordRead.decode,
        run(r, _ctx, reply) {
          M.StateReply.encode(reply, s.records.read(r.key, r.scope));
        },
      }),
    ],
    [
      M.Op.RecordScan,
      handler('record_scan', {
        decode: M.RecordScan.decode,
        run(r, _ctx, reply) {
          M.ScanReplyCodec.encode(reply, s.records.scan(r.start, r.end, r.limit, r.scope));
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
      M.Op.ChunkVerify,
      handler('chunk_verify', {
        decode: M.ChunkIdRequest.decode,
        async run(id, _ctx, reply) {
          M.VerifyReply.encode(reply, await s.chunks.verify(id));
        },
      }),
    ],
  ];
  return new Map(ops);
}
