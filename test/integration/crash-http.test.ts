import { it } from 'node:test';
import assert from 'node:assert/strict';
import { crashRound } from '../helpers/crash-http.js';
import { tempDir } from '../helpers/wait.js';

it('crash - every message that got a 202 is stored exactly once after SIGKILL and restart (5 rounds)', async () => {
  const { dir, cleanup } = await tempDir('fluxgate-crash-');
  try {
    for (let round = 1; round <= 5; round++) {
      const r = await crashRound({ dataDir: dir, round });
      assert.ok(r.acked > 0, `round ${round}: some messages were acknowledged before the kill`);
      assert.equal(r.lost, 0, `round ${round}: ${r.lost} acknowledged messages lost of ${r.acked}`);
      assert.equal(r.duplicated, 0, `round ${round}: ${r.duplicated} messages stored twice`);
    }
  } finally {
    await cleanup();
  }
});
