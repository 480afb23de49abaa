// Counters for /metrics in the Prometheus text format (no client library: the
// format is a few lines and the node exports a handful of series).
import type { RpcObserver } from '../rpc/server.js';
import type { ErrorCode } from '../util/errors.js';

export interface Gauges {
  chunks: number;
  chunkBytes: number;
  records: number;
  /** Times a stored record state failed its checksum (a lost copy met by a read, a decision or a scan). */
  recordsLost: number;
  diskTotalBytes: number;
  diskFreeBytes: number;
  connections: number;
  inFlight: number;
}

export class NodeMetrics implements RpcObserver {
  private readonly requests = new Map<string, number>(); // `${op}\0${status}` → count
  private readonly seconds = new Map<string, number>(); // op → sum of seconds
  private readonly connectionEvents = new Map<string, number>();
  private bytesIn = 0;
  private bytesOut = 0;
  private readonly started = Date.now();

  request(op: string, status: ErrorCode | 'ok', bytesIn: number, bytesOut: number, seconds: number): void {
    const k = `${op}\0${status}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
    this.seconds.set(op, (this.seconds.get(op) ?? 0) + seconds);
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }

  connection(event: string): void {
    this.connectionEvents.set(event, (this.connectionEvents.get(event) ?? 0) + 1);
  }

  requestCount(op: string, status: string): number {
    return this.requests.get(`${op}\0${status}`) ?? 0;
  }

  /**
   * Figures of work that runs beside the node in its process (self-heal, the
   * mover), added by whoever runs it: each a metric with one unlabelled value.
   */
  readonly more: Array<() => ReadonlyArray<{ name: string; type: 'counter' | 'gauge'; help: string; value: number }>> = [];

  render(nodeId: string, version: string, g: Gauges): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    metric('quorumfs_node_info', 'gauge', 'Node identity.');
    lines.push(`quorumfs_node_info{node="${nodeId}",version="${version}"} 1`);
    metric('quorumfs_uptime_seconds', 'gauge', 'Seconds since the node started.');
    lines.push(`quorumfs_uptime_seconds ${((Date.now() - this.started) / 1000).toFixed(1)}`);
    metric('quorumfs_rpc_requests_total', 'counter', 'RPC requests answered, by op and status.');
    for (const [k, v] of [...this.requests].sort()) {
      const [op, status] = k.split('\0');
      lines.push(`quorumfs_rpc_requests_total{op="${op}",status="${status}"} ${v}`);
    }
    metric('quorumfs_rpc_request_seconds_total', 'counter', 'Time spent serving RPC requests, by op.');
    for (const [op, v] of [...this.seconds].sort()) lines.push(`quorumfs_rpc_request_seconds_total{op="${op}"} ${v.toFixed(6)}`);
    metric('quorumfs_rpc_received_bytes_total', 'counter', 'Request frame bytes received.');
    lines.push(`quorumfs_rpc_received_bytes_total ${this.bytesIn}`);
    metric('quorumfs_rpc_sent_bytes_total', 'counter', 'Response frame bytes sent.');
    lines.push(`quorumfs_rpc_sent_bytes_total ${this.bytesOut}`);
    metric('quorumfs_rpc_connection_events_total', 'counter', 'Connections opened, closed, refused for bad auth or bad frames.');
    for (const [e, v] of [...this.connectionEvents].sort()) lines.push(`quorumfs_rpc_connection_events_total{event="${e}"} ${v}`);
    const gauge = (name: string, help: string, v: number): void => {
      metric(name, 'gauge', help);
      lines.push(`${name} ${v}`);
    };
    gauge('quorumfs_rpc_connections', 'Open RPC connections.', g.connections);
    gauge('quorumfs_rpc_in_flight', 'RPC requests being served.', g.inFlight);
    gauge('quorumfs_chunks', 'Chunks stored.', g.chunks);
    gauge('quorumfs_chunk_bytes', 'Bytes of chunks stored.', g.chunkBytes);
    gauge('quorumfs_records', 'Records stored.', g.records);
    metric('quorumfs_records_lost_total', 'counter', 'Stored record states met failing their checksum (each is repaired from a replica).');
    lines.push(`quorumfs_records_lost_total ${g.recordsLost}`);
    gauge('quorumfs_disk_total_bytes', 'Size of the filesystem holding the data directory.', g.diskTotalBytes);
    gauge('quorumfs_disk_free_bytes', 'Free bytes on the filesystem holding the data directory.', g.diskFreeBytes);
    for (const source of this.more) {
      for (const m of source()) {
        metric(m.name, m.type, m.help);
        lines.push(`${m.name} ${Number.isFinite(m.value) ? m.value : 0}`);
      }
    }
    return lines.join('\n') + '\n';
  }
}
