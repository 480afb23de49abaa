// Mutual authentication: each side proves it holds the cluster secret with an
// HMAC over both sides' fresh nonces, so neither proof can be replayed on a new
// connection. Pure functions; the state machine is in connection code.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { NONCE_BYTES } from './frame.js';

const CONTEXT = 'quorumfs-rpc-auth-v1';

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

function proof(secret: Buffer, role: 'client' | 'server', clusterName: string, first: Buffer, second: Buffer): Buffer {
  return createHmac('sha256', secret)
    .update(`${CONTEXT}\0${role}\0${clusterName}\0`)
    .update(first)
    .update(second)
    .digest();
}

/** What the client sends: bound to the server's nonce, so it is good for one connection only. */
export function clientProof(secret: Buffer, clusterName: string, serverNonce: Buffer, clientNonce: Buffer): Buffer {
  return proof(secret, 'client', clusterName, serverNonce, clientNonce);
}

/** What the server answers: bound to the client's nonce; the role label stops reflection. */
export function serverProof(secret: Buffer, clusterName: string, serverNonce: Buffer, clientNonce: Buffer): Buffer {
  return proof(secret, 'server', clusterName, clientNonce, serverNonce);
}

export function proofsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
