import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { UsageError, parseFlags } from './usage.js';

export const KEYGEN_HELP = `usage: quorumfs keygen FILE

Writes a fresh random cluster secret (256 bits, hex) to FILE with mode 0600.
Refuses to overwrite an existing file.`;

export async function keygenCommand(args: string[]): Promise<number> {
  const { positionals } = parseFlags(args, {}, true);
  if (positionals.length !== 1) throw new UsageError('keygen takes exactly one FILE');
  const file = positionals[0]!;
  let fh;
  try {
    fh = await open(file, 'wx', 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new UsageError(`${file} exists; refusing to overwrite a secret`);
    throw new UsageError(`cannot create ${file}: ${code ?? (err as Error).message}`);
  }
  try {
    await fh.writeFile(randomBytes(32).toString('hex') + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
  process.stdout.write(`wrote a new cluster secret to ${file}\n`);
  return 0;
}
