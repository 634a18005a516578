/**
 * @module kill -9 at a random moment loses no acknowledged append: a child process appends in a
 * loop and prints every acknowledged id; after SIGKILL the log is reopened (repairing the torn
 * tail) and must hold every acknowledged id exactly once, in order per writer.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { readRecords } from '../conformance/log.suite.js';
import { waitFor } from '../helpers/wait.js';
import { walHarnessAt } from './wal-harness.js';
import { tempDir } from '../helpers/wait.js';

const fixture = fileURLToPath(new URL('./fixtures/append-loop.ts', import.meta.url));

async function crashOnce(round: number): Promise<void> {
  const tmp = await tempDir('fluxgate-wal-crash-');
  const dir = join(tmp.dir, 'log');
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (s: string) => { out += s; });
    await waitFor(() => out.startsWith('ready\n'), { timeoutMs: 30_000, what: 'child ready' });
    // A random moment: after a random number of acknowledgements (some rounds early, some later).
    const target = 50 + Math.floor(Math.random() * (round % 2 ? 3000 : 400));
    await waitFor(() => out.split('\n').length >= target + 2, { timeoutMs: 60_000, what: `${target} acks`, intervalMs: 1 });
    child.kill('SIGKILL');
    await exited;
    // Only whole lines count: a line cut by the kill was not fully printed, so is not claimed.
    const acked = out.split('\n').slice(1, -1).map((l) => l.replace(/^ack /, ''));
    assert.ok(acked.length >= target, `${acked.length} acks seen, waited for ${target}`);

    const h = await walHarnessAt(dir);
    try {
      const seen = new Map<string, number>();
      const lastOfWriter = new Map<string, string>();
      let total = 0;
      for (;;) {
        const b = await h.log.read('check', 5000, 0);
        if (b.records.length === 0) break;
        for (const r of b.records) {
          total++;
          // Order per writer: ids of one writer come in the order it appended them.
          const [w, i, part = ''] = r.envelope.messageId.split('-');
          const key = `${i!.padStart(9, '0')}${part}`;
          assert.ok((lastOfWriter.get(w!) ?? '') < key, `writer ${w} out of order at ${r.envelope.messageId}`);
          lastOfWriter.set(w!, key);
          seen.set(r.envelope.messageId, (seen.get(r.envelope.messageId) ?? 0) + 1);
        }
      }
      for (const [id, n] of seen) assert.equal(n, 1, `${id} stored ${n} times`);
      const missing = acked.filter((id) => !seen.has(id));
      assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged ids missing after kill -9`);
      assert.ok(total >= acked.length);
      // The repaired log takes appends again and reads them back.
      await h.log.append([{ tenant: 't', project: 'p', device: 'd', kind: 'event', topic: 'x', protocol: 'http', receiveTime: 1, messageId: 'after-crash', payload: new Uint8Array([1]) }]);
      assert.deepEqual((await readRecords(h.log, 'check', 1)).map((r) => r.envelope.messageId), ['after-crash']);
    } finally {
      await h.close();
    }
  } finally {
    if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await exited; }
    await tmp.cleanup();
  }
}

describe('wal - crash safety', () => {
  for (const round of [1, 2, 3]) {
    it(`wal - kill -9 at a random moment loses no acknowledged append (round ${round})`, () => crashOnce(round));
  }
});
