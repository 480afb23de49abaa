// SHA-256 of chunk bytes, computed on libuv's thread pool (WebCrypto's digest
// runs as an async job there), not on the JS thread: a mount's JS thread also
// serves every FUSE request, and a node's serves every RPC, so 0.7 ms of
// hashing per MiB on it stalls both. The bytes must not change until it resolves.
import { webcrypto } from 'node:crypto';

export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', bytes)).toString('hex');
}
