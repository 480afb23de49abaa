// Frames sent to one peer in the same tick leave in one write.
//
// Every WebSocket frame used to be its own write(2), and on loopback a write
// also runs the receiver's TCP path: 30–45 µs each, the biggest single CPU
// cost of both the mount and the nodes (docs/performance.md). A proposer
// sends several frames to a node at once (an accept and the next key's
// prepare; a node's group commit answers many requests together), so the
// socket is corked at the first frame of a tick and uncorked when the tick's
// work is done (process.nextTick runs after the current microtask cascade):
// Node then hands everything queued to one writev. No frame waits longer than
// the code that queued it.
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
  process.nextTick(() => {
    corked.delete(socket);
    socket.uncork();
  });
}
