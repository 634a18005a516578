/**
 * @module Live subscriptions over HTTP: `GET /api/v1/devices/{id}/live` (Server-Sent Events,
 * one device) and `GET /api/v1/live` (WebSocket; send `{"subscribe":["dev-1","*"]}` and
 * `{"unsubscribe":[…]}`; `*` is every device of the tenant). Both take the API key as
 * `Authorization: Bearer` or, for browsers that cannot set headers, `?key=`. A subscriber whose
 * socket buffers more than 1 MiB is disconnected (SSE) or closed with 1008 (WebSocket) and counted.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { Type } from '@sinclair/typebox';
import { WebSocketServer, type WebSocket } from 'ws';
import { FluxgateError, isFluxgateError } from '../../core/errors.js';
import type { Store } from '../../stores/store.js';
import type { ApiAuth } from '../auth.js';
import type { LiveHub, LiveUpdate } from './hub.js';
import { errors, security } from '../rest/schemas.js';

const MAX_BUFFERED = 1024 * 1024;
const HEARTBEAT_MS = 15_000;
const LIVE_PATH = '/api/v1/live';

/** Lets `?key=` stand in for the Authorization header (EventSource and WebSocket in browsers). */
function withQueryKey(req: FastifyRequest | IncomingMessage, url: URL): void {
  const key = url.searchParams.get('key');
  if (key && !req.headers.authorization) req.headers.authorization = `Bearer ${key}`;
}

export async function liveRoutes(app: FastifyInstance, opts: { hub: LiveHub; store: Store; apiAuth: ApiAuth }): Promise<void> {
  const { hub, store, apiAuth } = opts;
  const streams = new Set<() => void>();

  app.get<{ Params: { id: string } }>('/api/v1/devices/:id/live', {
    schema: { tags: ['live'], summary: 'Live updates of one device as Server-Sent Events (event: telemetry)', security, params: Type.Object({ id: Type.String({ minLength: 1 }) }), querystring: Type.Object({ key: Type.Optional(Type.String()) }), response: errors(401, 403, 404) },
  }, async (req, reply) => {
    withQueryKey(req, new URL(req.url, 'http://x'));
    const { tenant } = await apiAuth.principalOf(req);
    if (!(await store.getDevice(tenant, req.params.id))) throw new FluxgateError('DEVICE_NOT_FOUND', `no device ${req.params.id} in tenant ${tenant}`);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': subscribed\n\n');
    const close = () => { streams.delete(close); unsubscribe(); clearInterval(heartbeat); res.end(); };
    streams.add(close);
    const unsubscribe = hub.subscribe(tenant, req.params.id, (update) => {
      if (res.writableLength > MAX_BUFFERED) { hub.dropped.inc({ reason: 'sse_slow' }); close(); return; }
      res.write(`event: telemetry\ndata: ${JSON.stringify(update)}\n\n`);
    });
    const heartbeat = setInterval(() => res.write(': heartbeat\n\n'), HEARTBEAT_MS);
    heartbeat.unref();
    req.raw.on('close', close);
  });

  // WebSocket: documented in the OpenAPI as a GET; the upgrade itself is served below.
  app.get(LIVE_PATH, { schema: { tags: ['live'], summary: 'Live updates over WebSocket: send {"subscribe":["device-id" | "*"]}', security, response: { 426: Type.Object({ code: Type.String(), message: Type.String() }), ...errors(401, 403) } } }, async (req, reply) => {
    // Credentials first, as for the upgrade: a wrong key or tenant is refused, not told to upgrade.
    await apiAuth.principalOf(req);
    return reply.status(426).send({ code: 'BAD_REQUEST', message: `${LIVE_PATH} is a WebSocket endpoint: connect with ws:// and send {"subscribe":["<device id>"]}` });
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== LIVE_PATH) return;
    withQueryKey(req, url);
    apiAuth.principalOf(req).then(({ tenant }) => {
      if (socket.destroyed) return;
      wss.handleUpgrade(req, socket, head, (ws) => serveLiveSocket(ws, tenant, hub));
    }, (err: unknown) => {
      const fx = isFluxgateError(err) ? err : new FluxgateError('INTERNAL', `live: ${(err as Error).message}`);
      socket.end(`HTTP/1.1 ${fx.status} ${STATUS_CODES[fx.status] ?? 'Error'}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ code: fx.code, message: fx.message })}`);
    });
  });
  // preClose: open streams would otherwise keep the server from closing.
  app.addHook('preClose', async () => {
    for (const close of [...streams]) close();
    for (const ws of wss.clients) ws.close(1001, 'node stopping');
    wss.close();
  });
}

function serveLiveSocket(ws: WebSocket, tenant: string, hub: LiveHub): void {
  const subs = new Map<string, () => void>();
  const send = (update: LiveUpdate) => {
    if (ws.bufferedAmount > MAX_BUFFERED) { hub.dropped.inc({ reason: 'ws_slow' }); ws.close(1008, 'too slow: live updates fell behind'); return; }
    ws.send(JSON.stringify({ type: 'telemetry', ...update }));
  };
  ws.on('message', (data) => {
    let msg: { subscribe?: unknown; unsubscribe?: unknown };
    try { msg = JSON.parse(String(data)); } catch { ws.send(JSON.stringify({ type: 'error', code: 'BAD_JSON', message: 'send JSON like {"subscribe":["device-id"]}' })); return; }
    const list = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string' && x.length > 0) : []);
    for (const device of list(msg.subscribe)) if (!subs.has(device)) subs.set(device, hub.subscribe(tenant, device, send));
    for (const device of list(msg.unsubscribe)) { subs.get(device)?.(); subs.delete(device); }
    ws.send(JSON.stringify({ type: 'subscribed', devices: [...subs.keys()] }));
  });
  ws.on('close', () => { for (const off of subs.values()) off(); subs.clear(); });
  ws.on('error', () => ws.terminate());
}
