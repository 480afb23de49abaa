// Joins the outputs of ../shared/bench/fsbench.sh (unchanged) on several
// targets into one markdown table with ratios and the peers' anchors
// (ANCHORS.md, reference only). Used by scripts/bench/fsbench-compare.sh.
//
// usage: node dist/scripts/bench/fsbench-table.js --local F --null F --memfs F --quorumfs F [--anchors ANCHORS.md]
// Each F is an fsbench.sh output (the null one holds only rows a and b, in the
// same `| figure | unit | value |` form). A missing or unreadable file gives n/a.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    local: { type: 'string' },
    null: { type: 'string' },
    memfs: { type: 'string' },
    quorumfs: { type: 'string' },
    anchors: { type: 'string' },
  },
});

interface Row {
  key: string;
  label: string;
  unit: string;
  value: number | null;
}

/** Rows "| a. label | unit | value |" of an fsbench output, by key ("a", "c1", ...). */
function readRows(file: string | undefined): Map<string, Row> {
  const rows = new Map<string, Row>();
  if (!file) return rows;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return rows;
  }
  for (const line of text.split('\n')) {
    const m = /^\| ([a-z]\d?)\. (.*?) \| ([^|]+?) \| ([^|]+?) \|$/.exec(line);
    if (!m) continue;
    const v = Number(m[4]);
    rows.set(m[1]!, { key: m[1]!, label: m[2]!, unit: m[3]!, value: m[4] === 'n/a' || !Number.isFinite(v) ? null : v });
  }
  return rows;
}

/** ANCHORS.md: "| a. label | local | bindfs | MooseFS | GlusterFS |" -> key -> [MooseFS, GlusterFS] as printed. */
function readAnchors(file: string | undefined): Map<string, [string, string]> {
  const out = new Map<string, [string, string]>();
  if (!file) return out;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const m = /^\| ([a-z]\d?)\. /.exec(line);
    if (!m) continue;
    const cells = line.split('|').map((c) => c.trim());
    // cells: '', label, local, bindfs, moosefs, glusterfs, ''
    if (cells.length >= 7) out.set(m[1]!, [cells[4]!, cells[5]!]);
  }
  return out;
}

function fmt(v: number | null | undefined): string {
  if (v === null || v === undefined) return 'n/a';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  if (v >= 1) return v.toFixed(2);
  return v.toFixed(3);
}

/** Relative speed of `a` against `b`: above 1 is faster. Rates divide as they are; times (unit "s") the other way. */
function speed(a: Row | undefined, b: Row | undefined): string {
  if (!a || !b || a.value === null || b.value === null || a.value === 0 || b.value === 0) return 'n/a';
  const r = a.unit === 's' ? b.value / a.value : a.value / b.value;
  return `${r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r >= 0.1 ? r.toFixed(2) : r.toPrecision(2)}×`;
}

/** The label without parenthesised details, to keep the table narrow. */
function short(label: string): string {
  return label.replace(/\s*\([^()]*\)/g, '').replace(/, psync QD1/, '').trim();
}

const local = readRows(values.local);
const nul = readRows(values.null);
const memfs = readRows(values.memfs);
const qfs = readRows(values.quorumfs);
const anchors = readAnchors(values.anchors);

const keys: string[] = [];
for (const m of [local, memfs, qfs, nul]) for (const k of m.keys()) if (!keys.includes(k)) keys.push(k);

const lines: string[] = [];
lines.push('| row | unit | local | null-fuse (a,b) | memfs-fuse | quorumfs | quorumfs/local | quorumfs/memfs | MooseFS anchor | GlusterFS anchor |');
lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const k of keys) {
  const any = qfs.get(k) ?? local.get(k) ?? memfs.get(k) ?? nul.get(k)!;
  const a = anchors.get(k);
  lines.push(
    `| ${k}. ${short(any.label)} | ${any.unit} | ${fmt(local.get(k)?.value)} | ${k === 'a' || k === 'b' ? fmt(nul.get(k)?.value) : '–'} | ${fmt(memfs.get(k)?.value)} | ${fmt(qfs.get(k)?.value)} | ${speed(qfs.get(k), local.get(k))} | ${speed(qfs.get(k), memfs.get(k))} | ${a?.[0] ?? 'n/a'} | ${a?.[1] ?? 'n/a'} |`,
  );
}
process.stdout.write(lines.join('\n') + '\n');
process.stdout.write(
  '\nRatios are relative speed (above 1× = quorumfs faster): value ÷ value for rates, and the other way round for times (unit s). ' +
    'Anchors are ANCHORS.md (another run, a busy machine, ±30%): reference only.\n',
);
