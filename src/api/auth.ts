/**
 * @module API credentials: `Authorization: Bearer <apiKey>`. Two kinds:
 * - the platform admin key (FLUXGATE_ADMIN_KEY or <dataDir>/admin.key): acts on the tenant the
 *   request names (header `X-Fluxgate-Tenant` or query `tenant=`), `default` when none, and
 *   alone may manage tenants;
 * - tenant API keys (stored hashed, ./rest/keys.ts) with a role: `read` (GET only), `write`
 *   (+ device registry writes, dead-letter replay and discard, every other write), `admin`
 *   (+ API keys and projects). A tenant key acts only on its own tenant; naming another is
 *   403 FORBIDDEN.
 * Every REST route takes its tenant from `await principalOf(req)`, never from the path alone.
 * Keys are cached for KEY_CACHE_MS; `forgetKey` (revocation) drops one at once on this node,
 * other nodes stop accepting it within KEY_CACHE_MS.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyRequest } from 'fastify';
import { FluxgateError } from '../core/errors.js';
import { hashToken } from '../core/ids.js';
import type { ApiKeyRecord, ApiRole, TenancyStore } from '../stores/store.js';

export const DEFAULT_TENANT = 'default';
export const TENANT_HEADER = 'x-fluxgate-tenant';
/** How long a looked-up API key is trusted without asking the store again. */
export const KEY_CACHE_MS = 5_000;
const MAX_CACHED = 10_000;

/** What a route needs: read < write < admin (tenant admin) < platform (the platform admin). */
export type Need = ApiRole | 'platform';
const RANK: Record<Need, number> = { read: 0, write: 1, admin: 2, platform: 3 };

export interface Principal {
  role: Need;
  tenant: string;
  /** The API key's id; undefined for the platform admin key. */
  keyId?: string;
}

type Req = Pick<FastifyRequest, 'headers' | 'method'> & { url: string } | IncomingMessage;

/** The bearer token of a request, or undefined. */
export function bearerToken(req: Pick<FastifyRequest, 'headers'> | IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

/** The tenant a request names (header first, then `?tenant=`), or undefined. */
export function namedTenant(req: Req): string | undefined {
  const h = req.headers[TENANT_HEADER];
  const header = Array.isArray(h) ? h[0] : h;
  if (header) return header;
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? undefined : new URLSearchParams(url.slice(q + 1)).get('tenant') ?? undefined;
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class ApiAuth {
  private readonly adminDigest: Buffer;
  private readonly keys = new Map<string, { key: ApiKeyRecord; until: number }>();
  /** Bumped by every revocation, so a lookup that raced with one does not cache the revoked key. */
  private revocations = 0;
  /** Tenants are never deleted: once seen, a tenant id is known for good. */
  private readonly knownTenants = new Set<string>([DEFAULT_TENANT]);

  constructor(adminKey: string, private readonly store: TenancyStore) {
    this.adminDigest = digest(adminKey);
  }

  /**
   * The principal of a request, checked against what it needs: by default `read` for GET and
   * HEAD, `write` for anything else. UNAUTHENTICATED without a known key; FORBIDDEN when the
   * role is too low or a tenant key names another tenant; TENANT_NOT_FOUND when the platform
   * admin names a tenant that does not exist.
   */
  async principalOf(req: Req, need?: Need): Promise<Principal> {
    const principal = await this.identify(req);
    const wanted = need ?? (req.method === 'GET' || req.method === 'HEAD' ? 'read' : 'write');
    if (RANK[principal.role] < RANK[wanted]) {
      const what = wanted === 'platform' ? 'only the platform admin key may do this' : `this needs an API key with role ${wanted} or higher`;
      throw new FluxgateError('FORBIDDEN', `${what}; this key has role ${principal.role}`);
    }
    return principal;
  }

  private async identify(req: Req): Promise<Principal> {
    const token = bearerToken(req);
    if (!token) throw new FluxgateError('UNAUTHENTICATED', 'no API key: send `Authorization: Bearer <apiKey>` (the admin key is printed at first start and kept in <dataDir>/admin.key)');
    const named = namedTenant(req);
    if (timingSafeEqual(digest(token), this.adminDigest)) {
      const tenant = named ?? DEFAULT_TENANT;
      if (!this.knownTenants.has(tenant)) {
        if (!(await this.store.getTenant(tenant))) throw new FluxgateError('TENANT_NOT_FOUND', `no tenant ${tenant}: list tenants with GET /api/v1/tenants`);
        this.knownTenants.add(tenant);
      }
      return { role: 'platform', tenant };
    }
    const key = await this.lookup(hashToken(token));
    if (!key) throw new FluxgateError('UNAUTHENTICATED', 'the API key is not known (or was revoked): use a key from POST /api/v1/keys or the admin key');
    if (named !== undefined && named !== key.tenant) throw new FluxgateError('FORBIDDEN', `this API key belongs to another tenant than ${named}: a tenant key acts only on its own tenant`);
    return { role: key.role, tenant: key.tenant, keyId: key.id };
  }

  private async lookup(hash: string): Promise<ApiKeyRecord | undefined> {
    const now = Date.now();
    const hit = this.keys.get(hash);
    if (hit && hit.until > now) return hit.key;
    const generation = this.revocations;
    const key = await this.store.findApiKeyByHash(hash);
    if (!key || generation !== this.revocations) {
      this.keys.delete(hash);
      return key && this.store.findApiKeyByHash(hash);
    }
    if (this.keys.size >= MAX_CACHED) this.keys.clear();
    this.keys.set(hash, { key, until: now + KEY_CACHE_MS });
    return key;
  }

  /** Drops a revoked key from the cache: it is refused at once on this node. */
  forgetKey(id: string): void {
    this.revocations++;
    for (const [hash, { key }] of this.keys) if (key.id === id) this.keys.delete(hash);
  }

  /** Tells the cache a tenant now exists (created on this node). */
  tenantCreated(id: string): void {
    this.knownTenants.add(id);
  }
}
