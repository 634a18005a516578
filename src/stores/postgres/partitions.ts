/**
 * @module Time partitions of `points` and `messages` (declarative range partitioning on device
 * time, ms). Partitions are `partitionDays` long and aligned to the epoch, named by their first
 * day (`points_20260101`); open() creates them from yesterday to a few periods ahead and a timer
 * keeps that window moving. A write whose device time has no partition (a late point from last
 * year, a clock in the future) creates the one it needs first, so no write fails for its time,
 * and there is no DEFAULT partition, whose rows would block creating their range later.
 *
 * Creation holds an advisory lock so nodes do not race on the catalog, and fills only the gaps
 * between existing partitions (a node with another `partitionDays` never overlaps them).
 * Which ranges exist is cached per table; a partition dropped by another node's retention only
 * makes an insert miss, and the writer then reloads and creates it (./write.ts).
 */
import type pg from 'pg';
import { ident } from './codec.js';
import { lockSql, LockKind } from './migrations.js';

export const DAY_MS = 86_400_000;
export const PARTITIONED = ['points', 'messages'] as const;
export type PartitionedTable = (typeof PARTITIONED)[number];

export interface PartitionRange { name: string; from: number; to: number }

/** Periods created ahead of now, so the day turning over never waits on DDL. */
const AHEAD = 3;

export class Partitions {
  readonly periodMs: number;
  private readonly ranges = new Map<PartitionedTable, PartitionRange[]>();

  constructor(private readonly pool: pg.Pool, private readonly schema: string, partitionDays: number) {
    this.periodMs = partitionDays * DAY_MS;
  }

  startOf(ts: number): number {
    return Math.floor(ts / this.periodMs) * this.periodMs;
  }

  /** Partition starts (of this store's period) that some of `ts` have no partition for. */
  missing(table: PartitionedTable, ts: Iterable<number>): Set<number> {
    const out = new Set<number>();
    const ranges = this.ranges.get(table) ?? [];
    let hit: PartitionRange | undefined;
    for (const t of ts) {
      if (hit && t >= hit.from && t < hit.to) continue;
      hit = find(ranges, t);
      if (!hit) out.add(this.startOf(t));
    }
    return out;
  }

  /** Creates the partitions covering now - 1 period … now + AHEAD periods. */
  async ensureAhead(now = Date.now()): Promise<void> {
    const starts = new Set<number>();
    for (let i = -1; i <= AHEAD; i++) starts.add(this.startOf(now) + i * this.periodMs);
    await this.ensure(starts);
  }

  /** Creates partitions for these period starts in both tables where no partition covers them. */
  async ensure(starts: Set<number>): Promise<void> {
    const s = ident(this.schema);
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      try {
        await client.query(lockSql(LockKind.partitions), [this.schema]);
        for (const table of PARTITIONED) {
          const ranges = await this.listWith(client, table);
          for (const start of [...starts].sort((a, b) => a - b)) {
            for (const gap of gaps(ranges, start, start + this.periodMs)) {
              const name = partitionName(table, gap.from);
              await client.query(`CREATE TABLE IF NOT EXISTS ${s}.${ident(name)} PARTITION OF ${s}.${table} FOR VALUES FROM (${gap.from}) TO (${gap.to})`);
              ranges.push({ name, ...gap });
              ranges.sort((a, b) => a.from - b.from);
            }
          }
          this.ranges.set(table, ranges);
        }
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    } finally {
      client.release();
    }
  }

  /** Reads the partitions of both tables from the catalog into the cache. */
  async reload(): Promise<void> {
    const client = await this.pool.connect();
    try {
      for (const table of PARTITIONED) this.ranges.set(table, await this.listWith(client, table));
    } finally {
      client.release();
    }
  }

  /** The cached partitions of a table, ascending. */
  list(table: PartitionedTable): PartitionRange[] {
    return [...(this.ranges.get(table) ?? [])];
  }

  forget(table: PartitionedTable, name: string): void {
    this.ranges.set(table, (this.ranges.get(table) ?? []).filter((r) => r.name !== name));
  }

  private async listWith(client: pg.PoolClient, table: PartitionedTable): Promise<PartitionRange[]> {
    const { rows } = await client.query<{ name: string; bound: string }>(`SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass`, [`${ident(this.schema)}.${table}`]);
    const out: PartitionRange[] = [];
    for (const r of rows) {
      // "FOR VALUES FROM ('1767225600000') TO ('1767312000000')"; MINVALUE/MAXVALUE/DEFAULT are not ours.
      const m = /FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)/.exec(r.bound);
      if (m) out.push({ name: r.name, from: Number(m[1]), to: Number(m[2]) });
    }
    return out.sort((a, b) => a.from - b.from);
  }
}

/** The partition holding ts, by binary search over ascending, non-overlapping ranges. */
function find(ranges: PartitionRange[], ts: number): PartitionRange | undefined {
  let lo = 0;
  let hi = ranges.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const r = ranges[mid];
    if (ts < r.from) hi = mid - 1;
    else if (ts >= r.to) lo = mid + 1;
    else return r;
  }
  return undefined;
}

/** The parts of [from, to) that no existing range covers (ranges ascending, non-overlapping). */
function gaps(ranges: PartitionRange[], from: number, to: number): Array<{ from: number; to: number }> {
  const out: Array<{ from: number; to: number }> = [];
  let a = from;
  for (const r of ranges) {
    if (r.to <= a) continue;
    if (r.from >= to) break;
    if (r.from > a) out.push({ from: a, to: r.from });
    a = Math.max(a, r.to);
    if (a >= to) break;
  }
  if (a < to) out.push({ from: a, to });
  return out;
}

/** `points_20260101` for the period starting that day; far dates by day number. */
export function partitionName(table: PartitionedTable, from: number): string {
  const d = new Date(from);
  const y = d.getUTCFullYear();
  if (Number.isNaN(y) || y < 1000 || y > 9999) return `${table}_d${from < 0 ? 'm' : ''}${Math.abs(Math.floor(from / DAY_MS))}`;
  const stamp = d.toISOString().slice(0, 10).replace(/-/g, '');
  // A clipped partition starts mid-day; its time keeps the name unique.
  return from % DAY_MS === 0 ? `${table}_${stamp}` : `${table}_${stamp}_${from % DAY_MS}`;
}
