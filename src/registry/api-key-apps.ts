/**
 * @module MQTT application clients authenticated by tenant API keys (the broker's
 * AppAuthenticator): password = API key (any username), or username = API key and no password.
 * The client then subscribes across its own tenant's topics only (the broker keeps one
 * subscription tree per tenant). Only `write` and `admin` keys are taken: an application client
 * may also publish (device commands), which a `read` key may not. Each CONNECT asks the store,
 * so a revoked key cannot connect again; sessions already connected stay until they disconnect.
 */
import { hashToken } from '../core/ids.js';
import type { TenancyStore } from '../stores/store.js';

export class ApiKeyApps {
  constructor(private readonly store: Pick<TenancyStore, 'findApiKeyByHash'>) {}

  async authenticate(username: string | undefined, password: Buffer | undefined): Promise<{ tenant: string; name: string } | undefined> {
    const secret = password && password.length > 0 ? password.toString('utf8') : username;
    if (!secret) return undefined;
    const key = await this.store.findApiKeyByHash(hashToken(secret));
    if (!key || key.role === 'read') return undefined;
    return { tenant: key.tenant, name: `key:${key.id}` };
  }
}
