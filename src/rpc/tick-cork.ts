// Frames sent to one peer in the same turn of the event loop leave in one write.
//
// Every WebSocket frame used to be its own write(2), and on loopback a write
// also runs the receiver's TCP path: 30–45 µs each, the biggest single CPU
// cost of both the mount and the nodes (docs/performance.md). A proposer
// sends several frames to a node at once (an accept and the next key's
// prepare; a node's group commit answers many requests together), so the
// socket is corked at the first frame and uncorked in the check phase of the
// same loop iteration (setImmediate): Node then hands everything queued to
// one writev. Until the twentieth session the uncork ran at process.nextTick,
// the end of the current callback's microtask cascade; frames that other
// callbacks of the same iteration sent (another node's answer, the FUSE
// request behind it, a batch sent from its own nextTick) then went in writes
// of their own: a created file cost the mount 10.7 socket writes, 7.9 with
// the uncork in the check phase, and the nodes 8% less CPU. A frame waits at
// most for the callbacks already due in this iteration; libuv does not block
// in poll while an immediate is pending.
import type { Socket } from 'node:net';
import type WebSocket from 'ws';

const corked = new WeakSet<Socket>();

/** The TCP (or TLS) socket under a ws connection: ws keeps it as `_socket`. */
function socketOf(ws: WebSocket): Socket | undefined {
  const s = (ws as unknown as { _socket?: Socket })._socket;
  return s && typeof s.cork === 'function' ? s : undefined;
}

export function corkForTick(ws: WebSocket): void {
  const socket = socketOf(ws);
  if (!socket || corked.has(socket) || socket.destroyed) return;
  corked.add(socket);
  socket.cork();
  setImmediate(() => {
    corked.delete(socket);
    socket.uncork();
  });
}
