/** @module Runs bench/mqtt-standalone.ts as a child process (real WAL) and reads its log back. */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Envelope } from '../../../src/core/envelope.js';
import { createFileLog } from '../../../src/log/wal/index.js';

export interface Child { proc: ChildProcess; port: number; url: string }

export async function spawnBroker(dataDir: string, extra: string[] = []): Promise<Child> {
  const script = new URL('../../../bench/mqtt-standalone.ts', import.meta.url).pathname;
  const proc = spawn(process.execPath, ['--import', 'tsx', script, '--data-dir', dataDir, '--devices', '100', ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: proc.stdout! });
  const port = await new Promise<number>((resolve, reject) => {
    lines.once('line', (l) => resolve(JSON.parse(l).port as number));
    proc.once('exit', (code) => reject(new Error(`broker exited with ${code}`)));
  });
  return { proc, port, url: `mqtt://127.0.0.1:${port}` };
}

export function killed(child: Child, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return resolve();
    child.proc.once('exit', () => resolve());
    child.proc.kill(signal);
  });
}

/** Every envelope in the WAL of `dataDir`, oldest first. */
export async function readLog(dataDir: string): Promise<Envelope[]> {
  const log = createFileLog({ dir: join(dataDir, 'log'), segmentBytes: 4 * 1024 * 1024, retentionHours: 0, retentionBytes: 0, maxLagRecords: 1e12 });
  await log.open();
  try {
    const out: Envelope[] = [];
    for (;;) {
      const batch = await log.read('verify', 10_000, 0);
      if (batch.records.length === 0) return out;
      out.push(...batch.records.map((r) => r.envelope));
    }
  } finally {
    await log.close();
  }
}
