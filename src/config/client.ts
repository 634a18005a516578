/** @module Where registry commands (`fluxgate device …`) find the node and the admin key: --url/--key, FLUXGATE_URL/FLUXGATE_ADMIN_KEY, else the local defaults. */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ClientSettings { url: string; key?: string; keySource: string }

export function clientSettings(flags: Record<string, string>, env: Record<string, string | undefined> = process.env): ClientSettings {
  const url = flags.url ?? env.FLUXGATE_URL ?? `http://127.0.0.1:${flags['http-port'] ?? env.FLUXGATE_HTTP_PORT ?? 8080}`;
  if (flags.key) return { url, key: flags.key, keySource: '--key' };
  if (env.FLUXGATE_ADMIN_KEY) return { url, key: env.FLUXGATE_ADMIN_KEY, keySource: 'FLUXGATE_ADMIN_KEY' };
  const path = join(flags['data-dir'] ?? env.FLUXGATE_DATA_DIR ?? './data', 'admin.key');
  try {
    return { url, key: readFileSync(path, 'utf8').trim(), keySource: path };
  } catch {
    return { url, keySource: `${path} (missing)` };
  }
}
