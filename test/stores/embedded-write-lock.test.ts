/**
 * @module The embedded store's writes wait for SQLite's write lock instead of failing when
 * another connection holds it for a moment. A deferred transaction that reads before it writes
 * (creating devices checks that none exists first) gets SQLITE_BUSY at once when the lock is
 * taken at its upgrade — SQLite calls no busy handler for an upgrade — which under load failed
 * device auto-provisioning with "database is locked". Here a second process holds the lock
 * (BEGIN IMMEDIATE) for 300 ms while the store creates devices and writes a batch: both must
 * succeed, and what they wrote must read back.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { it } from 'node:test';
import { EmbeddedStore } from '../../src/stores/embedded/index.js';
import { tempDir } from '../helpers/wait.js';

const HOLD_MS = 300;

/** A child process that takes the write lock of `file`, says so, holds it HOLD_MS and commits. */
function holdWriteLock(file: string) {
  const child = spawn(process.execPath, ['-e', `
    const Database = require('better-sqlite3');
    const db = new Database(${JSON.stringify(file)});
    db.exec('BEGIN IMMEDIATE');
    process.stdout.write('locked\\n');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ${HOLD_MS});
    db.exec('COMMIT');
    db.close();
  `], { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] });
  const locked = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => { if (d.toString().includes('locked')) resolve(); });
    child.once('exit', (code) => reject(new Error(`lock holder exited (${code}) before taking the lock`)));
  });
  return { child, locked, exited: once(child, 'exit') };
}

it('creates devices and writes a batch while another connection holds the write lock for a moment', async () => {
  const { dir, cleanup } = await tempDir('fluxgate-store-lock-');
  const store = new EmbeddedStore({ dir });
  try {
    await store.open();
    await store.createDevices([{ tenant: 'default', id: 'first', project: 'default', tokenHash: 'h0', disabled: false, createdAt: 1 }]);

    const holder = holdWriteLock(join(dir, 'store.db'));
    await holder.locked;
    const devices = Array.from({ length: 3 }, (_, i) => ({ tenant: 'default', id: `d${i}`, project: 'default', tokenHash: `h${i + 1}`, disabled: false, createdAt: 2 }));
    await store.createDevices(devices);
    const [code] = await holder.exited;
    assert.equal(code, 0);

    const second = holdWriteLock(join(dir, 'store.db'));
    await second.locked;
    await store.createDevice({ tenant: 'default', id: 'd3', project: 'default', tokenHash: 'h4', disabled: false, createdAt: 3 });
    await second.exited;

    for (const id of ['first', 'd0', 'd1', 'd2', 'd3']) assert.equal((await store.getDevice('default', id))?.id, id);
  } finally {
    await store.close();
    await cleanup();
  }
});
