/**
 * @module The platform admin key: from configuration, else generated once and kept in
 * <dataDir>/admin.key (mode 0600). A generated key is written only by `persist()`, which the
 * node calls once it started, so a failed first start never hides a key nobody saw printed.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateToken } from '../core/ids.js';

export interface AdminKey { key: string; generated: boolean; path?: string; persist(): Promise<void> }

export async function resolveAdminKey(dataDir: string, configured?: string): Promise<AdminKey> {
  const nothing = async () => undefined;
  if (configured) return { key: configured, generated: false, persist: nothing };
  const path = join(dataDir, 'admin.key');
  try {
    const key = (await readFile(path, 'utf8')).trim();
    if (key) return { key, generated: false, path, persist: nothing };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = generateToken('fga_');
  return { key, generated: true, path, persist: () => writeFile(path, key + '\n', { mode: 0o600 }) };
}
