/** @module The platform admin key: from configuration, else generated once and kept in <dataDir>/admin.key (mode 0600). */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateToken } from '../core/ids.js';

export async function resolveAdminKey(dataDir: string, configured?: string): Promise<{ key: string; generated: boolean; path?: string }> {
  if (configured) return { key: configured, generated: false };
  const path = join(dataDir, 'admin.key');
  try {
    const key = (await readFile(path, 'utf8')).trim();
    if (key) return { key, generated: false, path };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = generateToken('fga_');
  await writeFile(path, key + '\n', { mode: 0o600 });
  return { key, generated: true, path };
}
