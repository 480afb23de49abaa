// The two steps every durable file change on a node ends with: the file's
// bytes synced, and the directory entry that names it synced.
import { open, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function fsyncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `path` whole or not at all, durably: temp file, fsync, rename, fsync of the directory. */
export async function writeFileDurably(path: string, data: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, data, { mode });
  const fh = await open(tmp, 'r+');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  await fsyncDir(dirname(path));
}
