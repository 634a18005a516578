/** @module Message ids and secrets: sortable generated message ids, random tokens, token hashes. */
import { createHash, randomBytes } from 'node:crypto';

const nodeTag = randomBytes(4).toString('hex');
let sequence = 0;
let lastNow = -1;
let prefix = '';

/**
 * A message id for a message whose client gave none: unique per node run
 * (random node tag + receive time + counter), so two different messages never collide.
 * Hot path (every QoS 0 MQTT message): the time part is formatted once per millisecond.
 */
export function generateMessageId(now: number = Date.now()): string {
  if (now !== lastNow) {
    lastNow = now;
    prefix = `${nodeTag}-${now.toString(36)}-`;
  }
  sequence = (sequence + 1) >>> 0;
  return prefix + sequence.toString(36);
}

/** A bearer secret: 24 random bytes, URL-safe. */
export function generateToken(prefix = ''): string {
  return prefix + randomBytes(24).toString('base64url');
}

/** Tokens are high-entropy secrets, so a plain SHA-256 is enough to store them safely. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}
