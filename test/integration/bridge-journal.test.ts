/**
 * @module The bridge's redelivery journal (src/sources/bridge/journal.ts) on its own: entries
 * survive a reopen (marked as from the previous run), the last entry per packet id wins, a torn
 * last line is ignored, compaction keeps exactly the live entries, remove deletes the file.
 * And the topic-filter checks of a bridge definition.
 */
import assert from 'node:assert/strict';
import { appendFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { journalPath, messageHash, RedeliveryJournal } from '../../src/sources/bridge/journal.js';
import { filterProblems, publicView, shownUrl, withDefaults } from '../../src/sources/bridge/definition.js';
import { tempDir } from '../helpers/wait.js';

describe('bridge redelivery journal', () => {
  it('keeps entries across a reopen, last per packet id, and ignores a torn last line', async () => {
    const dir = await tempDir('fluxgate-journal-');
    try {
      const path = journalPath(dir.dir, 'b1', 'mqtt://h:1883', 'c1');
      const j = new RedeliveryJournal(path);
      await j.open();
      const h = messageHash('t/1', Buffer.from('{}'));
      j.assign(7, { hash: h, messageId: 'm-old', receiveTime: 1 });
      await j.persist([{ packetId: 7, hash: h, messageId: 'm-old', receiveTime: 1 }]);
      j.assign(7, { hash: h, messageId: 'm-new', receiveTime: 2 });
      j.assign(8, { hash: h, messageId: 'm-8', receiveTime: 3 });
      await j.persist([{ packetId: 7, hash: h, messageId: 'm-new', receiveTime: 2 }, { packetId: 8, hash: h, messageId: 'm-8', receiveTime: 3 }]);
      assert.equal(j.get(7)?.previousRun, false);
      j.acked(7, 'm-new');
      assert.equal(j.get(7)?.acked, true);
      await j.close();
      await appendFile(path, '{"p":9,"h":"ab","id":"torn'); // a crash mid-write

      const again = new RedeliveryJournal(path);
      await again.open();
      assert.deepEqual({ ...again.get(7) }, { hash: h, messageId: 'm-new', receiveTime: 2, previousRun: true, acked: false });
      assert.equal(again.get(8)?.messageId, 'm-8');
      assert.equal(again.get(9), undefined);
      assert.notEqual(messageHash('t/1', Buffer.from('{}')), messageHash('t/2', Buffer.from('{}')), 'the topic is part of the hash');
      await again.remove();
      await assert.rejects(stat(path), /ENOENT/);
    } finally {
      await dir.cleanup();
    }
  });

  it('compacts to the live entries once the file holds many more lines than entries', async () => {
    const dir = await tempDir('fluxgate-journal-');
    try {
      const path = join(dir.dir, 'j.journal');
      const j = new RedeliveryJournal(path);
      await j.open();
      // 10 packet ids reused 2,000 times each: 20,000 lines for 10 live entries.
      for (let round = 0; round < 2000; round++) {
        const batch = Array.from({ length: 10 }, (_, p) => ({ packetId: p, hash: 'h', messageId: `m-${round}-${p}`, receiveTime: round }));
        for (const e of batch) j.assign(e.packetId, e);
        await j.persist(batch);
      }
      await j.close();
      const lines = (await readFile(path, 'utf8')).split('\n').filter(Boolean);
      assert.ok(lines.length < 20_000, `compacted: ${lines.length} lines`);
      const again = new RedeliveryJournal(path);
      await again.open();
      for (let p = 0; p < 10; p++) assert.equal(again.get(p)?.messageId, `m-1999-${p}`);
      await again.close();
    } finally {
      await dir.cleanup();
    }
  });

  it('never shows a password, whether in the password field or in the URL', () => {
    assert.equal(shownUrl('mqtt://u:s3cret@h:1883'), 'mqtt://u:***@h:1883');
    assert.equal(shownUrl('mqtts://h:8883/x'), 'mqtts://h:8883/x');
    const view = publicView(withDefaults({ name: 'b', url: 'mqtt://u:s3cret@h:1883', password: 'pw-x', topics: ['a/#'], template: { pattern: 'a/{tenant}/{device}' }, tls: { key: 'PRIVATE-KEY-x' } }));
    const text = JSON.stringify(view);
    for (const secret of ['s3cret', 'pw-x', 'PRIVATE-KEY-x']) assert.equal(text.includes(secret), false, secret);
    assert.equal(view.hasPassword, true);
  });

  it('checks topic filters, shared subscriptions included', () => {
    assert.deepEqual(filterProblems('a/+/b/#'), []);
    assert.deepEqual(filterProblems('$share/grp/mtic/msg/#'), []);
    assert.ok(filterProblems('a/#/b').length > 0);
    assert.ok(filterProblems('a/b+').length > 0);
    assert.ok(filterProblems('$share/grp').length > 0);
    assert.ok(filterProblems('$share//x').length > 0);
  });
});
