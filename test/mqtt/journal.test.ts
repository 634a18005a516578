/** @module The broker's state journal: torn tails are skipped, compaction keeps exactly the live state. */
import { strict as assert } from 'node:assert';
import { appendFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { Journal } from '../../src/sources/mqtt/journal.js';
import { tempDir } from '../helpers/wait.js';

it('journal - a torn last line is skipped; compaction rewrites from the snapshot and appends follow it', async () => {
  const tmp = await tempDir();
  try {
    const path = join(tmp.dir, 'j.jsonl');
    const j = new Journal(path);
    await j.open([{ a: 1 }]);
    j.append({ b: 2 });
    await j.close();
    await appendFile(path, '{"torn":');
    const j2 = new Journal(path);
    assert.deepEqual(await j2.read(), [{ a: 1 }, { b: 2 }]);
    await j2.open([{ a: 1 }, { b: 2 }]);
    const big = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 17; i++) j2.append({ big, i });
    await j2.flush();
    assert.ok((await stat(path)).size > 16 * 1024 * 1024);
    await j2.maybeCompact(() => [{ live: true }]);
    j2.append({ after: 1 });
    await j2.close();
    assert.equal(await readFile(path, 'utf8'), '{"live":true}\n{"after":1}\n');
  } finally {
    await tmp.cleanup();
  }
});
