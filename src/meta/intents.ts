// Recovery of a rename that a crash interrupted. FsMeta.rename writes its
// intent first, then the destination name (replacing in one step), then drops
// the source name, fixes a moved directory's parent, and deletes the intent.
// So a stale intent is finished when the destination already names the inode
// (the rename took effect: finish the rest), and undone when it does not (the
// rename never took effect: the source name is still the only one). An
// exchange (RENAME_EXCHANGE) writes the destination first the same way, then
// gives the source name the destination's old inode: finished or undone by
// the same test.
import { KEEP, type KeySpace } from '../keyspace/types.js';
import { toolDirScopes } from './dir-scopes.js';
import { inodeKey } from './schema.js';
import { S_IFDIR, S_IFMT, decodeDirent, decodeInode, decodeIntent, encodeDirent, encodeInode, type Ino } from './types.js';

export type IntentOutcome = 'finished' | 'undone' | 'gone' | 'busy';

export async function resolveIntent(ks: KeySpace, key: Buffer): Promise<IntentOutcome> {
  const raw = await ks.read(key);
  if (!raw) return 'gone';
  const intent = decodeIntent(raw);
  // Names are read and changed under their directories' scopes: a mount holding one has its changes in first.
  const dirs = toolDirScopes(ks);
  const dst = await dirs.readEntry(intent.dstDir, intent.dstName);
  const tookEffect = dst !== null && decodeDirent(dst).ino === intent.ino;
  const other = intent.exchange;
  if (tookEffect && other) {
    // An exchange: the destination names the source's inode; the source name takes the other one.
    await dirs.changeEntry(intent.srcDir, intent.srcName, (old) =>
      old && decodeDirent(old).ino === intent.ino ? encodeDirent({ ino: other.ino, type: other.type }) : KEEP,
    );
    if (intent.srcDir !== intent.dstDir) {
      if ((intent.type & S_IFMT) === S_IFDIR) await setParent(ks, intent.ino, intent.dstDir);
      if ((other.type & S_IFMT) === S_IFDIR) await setParent(ks, other.ino, intent.srcDir);
    }
  } else if (tookEffect) {
    const sameName = intent.srcDir === intent.dstDir && intent.srcName.equals(intent.dstName);
    if (!sameName) {
      await dirs.changeEntry(intent.srcDir, intent.srcName, (old) => (old && decodeDirent(old).ino === intent.ino ? null : KEEP));
    }
    if ((intent.type & S_IFMT) === S_IFDIR && intent.srcDir !== intent.dstDir) await setParent(ks, intent.ino, intent.dstDir);
  }
  // Delete only the intent we judged: a rewritten one is someone else's.
  let ours = true;
  await ks.change(key, (old) => {
    ours = old !== null && old.equals(raw);
    return ours ? null : KEEP;
  });
  if (!ours) return 'busy';
  return tookEffect ? 'finished' : 'undone';
}

/** A moved directory's parent, set unless it is already that (or the directory is gone). */
async function setParent(ks: KeySpace, ino: Ino, parent: Ino): Promise<void> {
  await ks.change(inodeKey(ino), (old) => {
    if (!old) return KEEP;
    const i = decodeInode(old);
    if (i.parent === parent) return KEEP;
    i.parent = parent;
    return encodeInode(i);
  });
}
