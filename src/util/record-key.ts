// Record keys: a length byte, the group (what placement hashes: every key of
// a group lives on the same replicas), then the name. Pure, shared by the
// clients (keyspace, cluster) and the nodes (which place keys for self-heal's
// digests).
export const MAX_GROUP_BYTES = 255;

export function recordKey(group: Buffer, name: Buffer): Buffer {
  if (group.length === 0 || group.length > MAX_GROUP_BYTES) throw new RangeError(`record key group of ${group.length} bytes`);
  return Buffer.concat([Buffer.from([group.length]), group, name]);
}

export function splitKey(key: Buffer): { group: Buffer; name: Buffer } {
  const n = key[0];
  if (n === undefined || n === 0 || key.length < 1 + n) throw new RangeError('malformed record key');
  return { group: key.subarray(1, 1 + n), name: key.subarray(1 + n) };
}

/** The placement part of an encoded key: length byte and group. */
export function groupOf(key: Buffer): Buffer {
  const n = key[0];
  if (n === undefined || n === 0 || key.length < 1 + n) throw new RangeError('malformed record key');
  return key.subarray(0, 1 + n);
}

