// `-o` parsing of quorumfs mount: the write-behind switch and a bad option.
import test from 'ava';
import { parseMountOptions } from '../../src/cli/mount-options.js';
import { UsageError } from '../../src/cli/usage.js';

test('names are written behind by default; -o sync writes every change through; -o async undoes it', (t) => {
  t.true(parseMountOptions([]).writeBehind);
  t.false(parseMountOptions(['rw,sync']).writeBehind);
  t.true(parseMountOptions(['sync', 'async']).writeBehind);
  t.true(parseMountOptions([]).bornLeases);
  t.false(parseMountOptions(['born_leases=0']).bornLeases);
  t.throws(() => parseMountOptions(['born_leases=yes']));
  t.is(parseMountOptions(['lock_lease=2']).lockLeaseMs, 2000);
});

test('an unknown or malformed option is a usage error', (t) => {
  t.throws(() => parseMountOptions(['bogus']), { instanceOf: UsageError, message: /bogus/ });
  t.throws(() => parseMountOptions(['lock_lease=0']), { instanceOf: UsageError });
});
