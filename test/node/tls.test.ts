// wss:// with a CA file: the node serves TLS, clients verify it against the CA.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NodeClient } from '../../src/rpc/node-client.js';
import { isQfsError } from '../../src/util/errors.js';
import { silentLogger } from '../../src/util/log.js';
import { runCli, startNode, writeCluster } from '../helpers/cluster.js';

const run = promisify(execFile);

async function makeCa(dir: string, name: string): Promise<void> {
  await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}-key.pem`), '-out', join(dir, `${name}.pem`)]);
}

test('a node serves wss:// and clients trust it only through the configured CA', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const d = cluster.dir;
  await makeCa(d, 'ca');
  await makeCa(d, 'other-ca');
  await writeFile(join(d, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1\n');
  await run('openssl', ['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=n1', '-keyout', join(d, 'node-key.pem'), '-out', join(d, 'node.csr')]);
  await run('openssl', ['x509', '-req', '-in', join(d, 'node.csr'), '-CA', join(d, 'ca.pem'), '-CAkey', join(d, 'ca-key.pem'), '-CAcreateserial', '-days', '2', '-extfile', join(d, 'ext.cnf'), '-out', join(d, 'node.pem')]);
  const config = JSON.parse(await readFile(cluster.configPath, 'utf8'));
  const url = cluster.nodes[0]!.url.replace('ws://', 'wss://');
  config.nodes[0].url = url;
  config.tls = { caFile: 'ca.pem', certFile: 'node.pem', keyFile: 'node-key.pem' };
  await writeFile(cluster.configPath, JSON.stringify(config));
  await startNode(t, cluster, 'n1');

  const client = (ca: Buffer | undefined) => {
    const c = new NodeClient({ url: `${url}/rpc`, secret: cluster.secret, clusterName: cluster.name, log: silentLogger(), defaultTimeoutMs: 2000, ...(ca ? { ca } : {}) });
    t.teardown(() => c.close());
    return c;
  };
  const good = client(await readFile(join(d, 'ca.pem')));
  await good.ping();
  t.is((await good.stat()).nodeId, 'n1');
  // a certificate from another CA, and no CA at all, are refused before any request
  for (const c of [client(await readFile(join(d, 'other-ca.pem'))), client(undefined)]) {
    const err = await t.throwsAsync(c.ping());
    t.true(isQfsError(err, 'unavailable') || isQfsError(err, 'timeout'), String(err));
  }
  // and the CLI sees it too
  const status = await runCli(['status', '--config', cluster.configPath, '--json']);
  t.is(status.code, 0, status.stderr);
  t.true(JSON.parse(status.stdout).nodes[0].up);
});

test('wss:// without tls.caFile is a config error naming the field', async (t) => {
  const cluster = await writeCluster(t, 1, { replication: 1 });
  const config = JSON.parse(await readFile(cluster.configPath, 'utf8'));
  config.nodes[0].url = cluster.nodes[0]!.url.replace('ws://', 'wss://');
  await writeFile(cluster.configPath, JSON.stringify(config));
  const r = await runCli(['node', '--config', cluster.configPath, '--id', 'n1']);
  t.is(r.code, 2);
  t.regex(r.stderr, /config\.nodes\[0\]\.url: wss:\/\/ needs config\.tls\.caFile/);
});
