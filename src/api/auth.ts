/**
 * @module API credentials: `Authorization: Bearer <apiKey>`. Today the platform admin key
 * (acting on the `default` tenant); API keys with roles per tenant come with multi-tenancy.
 * Every REST route takes its tenant from `principalOf(req)`, never from the path alone.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { FluxgateError } from '../core/errors.js';

export const DEFAULT_TENANT = 'default';

export interface Principal {
  role: 'admin';
  tenant: string;
}

/** The bearer token of a request, or undefined. */
export function bearerToken(req: FastifyRequest): string | undefined {
  const h = req.headers.authorization;
  if (!h) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
  return m?.[1];
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class ApiAuth {
  private readonly adminDigest: Buffer;

  constructor(adminKey: string) {
    this.adminDigest = digest(adminKey);
  }

  principalOf(req: FastifyRequest): Principal {
    const token = bearerToken(req);
    if (!token) throw new FluxgateError('UNAUTHENTICATED', 'no API key: send `Authorization: Bearer <apiKey>` (the admin key is printed at first start and kept in <dataDir>/admin.key)');
    if (!timingSafeEqual(digest(token), this.adminDigest)) throw new FluxgateError('UNAUTHENTICATED', 'the API key is not known: use the admin key from <dataDir>/admin.key or FLUXGATE_ADMIN_KEY');
    return { role: 'admin', tenant: DEFAULT_TENANT };
  }
}
