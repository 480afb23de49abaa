// A caller's supplementary groups. FUSE hands a request only the caller's
// uid, gid and pid; the groups a process holds besides its primary one are
// in /proc/<pid>/status ("Groups:"), where other FUSE filesystems read them
// too. Read only for the checks that need them (chown to a group, setgid on
// chmod), not per request.
import { readFile } from 'node:fs/promises';

export async function supplementaryGroups(pid: number): Promise<number[]> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return [];
  try {
    const status = await readFile(`/proc/${pid}/status`, 'latin1');
    const line = /^Groups:\s*(.*)$/m.exec(status);
    if (!line) return [];
    return line[1]!
      .trim()
      .split(/\s+/)
      .filter((g) => g.length > 0)
      .map(Number)
      .filter((g) => Number.isSafeInteger(g) && g >= 0);
  } catch {
    // the process is gone (or /proc is not mounted): only its primary group counts
    return [];
  }
}
