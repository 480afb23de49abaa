// The one cluster config file that nodes, mounts and tools all read.
// Validated at load; every error names the field and the file.
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isNodeId, type NodeId } from '../util/ids.js';

export interface NodeConfig {
  id: NodeId;
  /** ws://host:port or wss://host:port; RPC is served at /rpc, health at /healthz, metrics at /metrics. */
  url: string;
  /** Absolute, resolved against the config file's directory. */
  dataDir: string;
  /** Placement weight (relative capacity), default 1. */
  weight: number;
  zone: string | null;
  /** Address to bind, default the URL's host and port. */
  listen: { host: string; port: number };
  /** Free bytes kept back from chunk writes so records always have room. */
  reserveBytes: number;
}

export interface TlsConfig {
  caFile: string | null;
  certFile: string | null;
  keyFile: string | null;
}

export interface ClusterConfig {
  /** Absolute path of the file it came from. */
  path: string;
  name: string;
  secretFile: string;
  replication: number;
  writeQuorum: number;
  nodes: NodeConfig[];
  tls: TlsConfig;
  timeouts: { requestMs: number; connectMs: number; tombstoneGraceMs: number };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(o: Json, field: string, where: string, fallback?: string): string {
  const v = o[field];
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(`${where}.${field}: expected a non-empty string`);
  return v;
}

function int(o: Json, field: string, where: string, fallback: number, min: number, max: number): number {
  const v = o[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${where}.${field}: expected an integer from ${min} to ${max}, got ${JSON.stringify(o[field])}`);
  }
  return v;
}

function checkKeys(o: Json, allowed: readonly string[], where: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new ConfigError(`${where}.${k}: unknown field (expected one of ${allowed.join(', ')})`);
  }
}

export function parseNodeUrl(url: string, where: string): { host: string; port: number; secure: boolean } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${where}: ${JSON.stringify(url)} is not a URL`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new ConfigError(`${where}: must start with ws:// or wss://`);
  if (u.pathname !== '/' || u.search || u.hash) throw new ConfigError(`${where}: give only scheme, host and port (no path)`);
  const secure = u.protocol === 'wss:';
  const port = u.port ? Number(u.port) : secure ? 443 : 80;
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port, secure };
}

export function parseListen(s: string, where: string): { host: string; port: number } {
  const m = /^(.*):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || port < 0 || port > 65535) throw new ConfigError(`${where}: expected HOST:PORT, got ${JSON.stringify(s)}`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/** Validates a parsed config object. `baseDir` resolves relative paths. */
export function validateConfig(raw: unknown, path: string): ClusterConfig {
  const baseDir = dirname(path);
  const at = (p: string): string => resolve(baseDir, p);
  if (!isObject(raw)) throw new ConfigError(`${path}: expected a JSON object`);
  checkKeys(raw, ['name', 'secretFile', 'replication', 'writeQuorum', 'nodes', 'tls', 'timeouts'], 'config');
  const name = str(raw, 'name', 'config');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new ConfigError('config.name: use 1-64 letters, digits, _ . -');
  const secretFile = at(str(raw, 'secretFile', 'config'));
  if (!Array.isArray(raw['nodes']) || raw['nodes'].length === 0) throw new ConfigError('config.nodes: expected a non-empty array');

  const tlsRaw = raw['tls'] ?? {};
  if (!isObject(tlsRaw)) throw new ConfigError('config.tls: expected an object');
  checkKeys(tlsRaw, ['caFile', 'certFile', 'keyFile'], 'config.tls');
  const opt = (o: Json, f: string, w: string): string | null => (o[f] === undefined ? null : at(str(o, f, w)));
  const tls: TlsConfig = {
    caFile: opt(tlsRaw, 'caFile', 'config.tls'),
    certFile: opt(tlsRaw, 'certFile', 'config.tls'),
    keyFile: opt(tlsRaw, 'keyFile', 'config.tls'),
  };
  if ((tls.certFile === null) !== (tls.keyFile === null)) throw new ConfigError('config.tls: certFile and keyFile go together');

  const seenIds = new Set<string>();
  const seenUrls = new Set<string>();
  const nodes = raw['nodes'].map((n: unknown, i: number): NodeConfig => {
    const where = `config.nodes[${i}]`;
    if (!isObject(n)) throw new ConfigError(`${where}: expected an object`);
    checkKeys(n, ['id', 'url', 'dataDir', 'weight', 'zone', 'listen', 'reserveBytes'], where);
    const id = str(n, 'id', where);
    if (!isNodeId(id)) throw new ConfigError(`${where}.id: use 1-63 letters, digits, _ . - (got ${JSON.stringify(id)})`);
    if (seenIds.has(id)) throw new ConfigError(`${where}.id: duplicate node id ${JSON.stringify(id)}`);
    seenIds.add(id);
    const url = str(n, 'url', where).replace(/\/$/, '');
    const parsed = parseNodeUrl(url, `${where}.url`);
    if (seenUrls.has(url)) throw new ConfigError(`${where}.url: duplicate url ${url}`);
    seenUrls.add(url);
    if (parsed.secure && tls.caFile === null) throw new ConfigError(`${where}.url: wss:// needs config.tls.caFile`);
    const weight = n['weight'] ?? 1;
    if (typeof weight !== 'number' || !(weight > 0) || !Number.isFinite(weight)) throw new ConfigError(`${where}.weight: expected a positive number`);
    const zone = n['zone'] === undefined ? null : str(n, 'zone', where);
    const listen = n['listen'] === undefined ? { host: parsed.host, port: parsed.port } : parseListen(str(n, 'listen', where), `${where}.listen`);
    return {
      id,
      url,
      dataDir: at(str(n, 'dataDir', where)),
      weight,
      zone,
      listen,
      reserveBytes: int(n, 'reserveBytes', where, 64 * 1024 * 1024, 0, Number.MAX_SAFE_INTEGER),
    };
  });

  // Fewer nodes than copies is a list of seeds: the membership is learned from them (openCluster).
  const replication = int(raw, 'replication', 'config', 3, 1, 15);
  const writeQuorum = int(raw, 'writeQuorum', 'config', Math.floor(replication / 2) + 1, 1, replication);
  const timeoutsRaw = raw['timeouts'] ?? {};
  if (!isObject(timeoutsRaw)) throw new ConfigError('config.timeouts: expected an object');
  checkKeys(timeoutsRaw, ['requestMs', 'connectMs', 'tombstoneGraceMs'], 'config.timeouts');
  const requestMs = int(timeoutsRaw, 'requestMs', 'config.timeouts', 5000, 100, 600_000);
  // A change call retries until its deadline (requestMs after it started, which
  // was before the delete it could meet); the grace must outlast it.
  const minGrace = requestMs + 1000;
  const grace = timeoutsRaw['tombstoneGraceMs'];
  if (typeof grace === 'number' && grace < minGrace) {
    throw new ConfigError(`config.timeouts.tombstoneGraceMs: ${grace} is below requestMs + 1000 (${minGrace}); a delete purged that soon could meet a change still retrying`);
  }
  const timeouts = {
    requestMs,
    connectMs: int(timeoutsRaw, 'connectMs', 'config.timeouts', 3000, 100, 600_000),
    // A delete is purged only after it has been settled this long: longer than any
    // change call can keep retrying (see Registers.purgeSettledTombstone).
    tombstoneGraceMs: int(timeoutsRaw, 'tombstoneGraceMs', 'config.timeouts', Math.max(60_000, 2 * requestMs), minGrace, 86_400_000),
  };
  return { path, name, secretFile, replication, writeQuorum, nodes, tls, timeouts };
}

export async function loadConfig(file: string): Promise<ClusterConfig> {
  const path = resolve(file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${path}: invalid JSON: ${(err as Error).message}`);
  }
  try {
    return validateConfig(raw, path);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${path}: ${err.message}`);
    throw err;
  }
}

const MIN_SECRET_CHARS = 32;

/** The cluster secret: the file's trimmed content, at least 32 characters, not readable by others. */
export async function loadSecret(config: Pick<ClusterConfig, 'secretFile'>): Promise<Buffer> {
  let text: string;
  try {
    text = await readFile(config.secretFile, 'utf8');
  } catch (err) {
    throw new ConfigError(`config.secretFile: cannot read ${config.secretFile}: ${(err as Error).message}`);
  }
  const secret = text.trim();
  if (secret.length < MIN_SECRET_CHARS) {
    throw new ConfigError(`config.secretFile: ${config.secretFile} holds ${secret.length} characters; at least ${MIN_SECRET_CHARS} are needed (quorumfs keygen FILE)`);
  }
  return Buffer.from(secret, 'utf8');
}

export function findNode(config: ClusterConfig, id: string): NodeConfig {
  const node = config.nodes.find((n) => n.id === id);
  if (!node) throw new ConfigError(`--id: no node ${JSON.stringify(id)} in ${config.path} (known: ${config.nodes.map((n) => n.id).join(', ')})`);
  return node;
}

/** For `format` and `dev`, which make a cluster out of the listed nodes: every node of it must be listed. */
export function requireEveryNode(config: ClusterConfig): void {
  if (config.replication > config.nodes.length) {
    throw new ConfigError(`config.replication: ${config.replication} copies need at least ${config.replication} nodes, the config lists ${config.nodes.length} (a shorter list only names seeds of a running cluster)`);
  }
}
