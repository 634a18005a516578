/**
 * @module Fluxgate's MQTT source: a 3.1.1 + 5.0 broker that acknowledges a device publish
 * (PUBACK / PUBREC) only once the Log holds it durably. Its only public surface is
 * `createMqttSource`; protocol code never owns sockets: TCP, TLS, WebSocket (`/mqtt`) and
 * in-memory pairs all go through `handle(duplex)`.
 *
 * Decision: our own core on mqtt-packet 9 (its parser and generator; no hand-written codec),
 * not aedes. aedes 1.2.0 as published answers an MQTT 5 CONNECT with CONNACK 0x84 (its MQTT 5
 * work is unreleased), passes 8 of 10 Paho 3.1.1 interop tests, cannot run the 10 MQTT 5 ones,
 * and crashes under an unbounded publish blast (DESIGN.md, measured here 2026-11-24); its
 * persistence acknowledges without our log in the path. Every v5 feature the issue lists is
 * here in about 2,000 lines, and the durable-ack path stays ours: appends of all connections in
 * one event-loop turn share one `log.append` (one fdatasync), and backpressure pauses sockets.
 * Figures (bench/mqtt-load.ts, docs/benchmarks.md "## MQTT broker", shared 2-core machine,
 * medians of 3 alternating runs): QoS 1 publish→PUBACK with fdatasync 64,000 msg/s against
 * Mosquitto's 33,000 without; QoS 2 47,000 against 43,000; QoS 0 115,000 against 242,000
 * (every QoS 0 message is logged durably; Mosquitto discards it without subscribers);
 * 6.3 KiB per idle connection. 100 SIGKILL rounds each at QoS 1 and 2: 0 acknowledged
 * messages lost, 0 logged twice.
 *
 * Files: connection.ts (per-client state machine), connect.ts (CONNECT/CONNACK), inbound.ts
 * (PUBLISH/SUBSCRIBE from clients), broker.ts (sessions, routing, backpressure), session*.ts
 * (persistent sessions under <dataDir>/mqtt/), subscriptions.ts (topic trie), retained.ts,
 * will.ts, topics.ts (device topics and ACL), accept.ts (log, route or refuse a PUBLISH),
 * ingest.ts (group appends), journal.ts (state files), metrics.ts.
 */
import { readFileSync } from 'node:fs';
import type { Server as HttpServer, IncomingMessage } from 'node:http';
import { createServer as createTcpServer, type Server as NetServer, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { FluxgateError } from '../../core/errors.js';
import type { Source, SourceAddress } from '../source.js';
import { Broker, type AppAuthenticator, type BrokerOptions, type LocalHandler } from './broker.js';
import type { RoutedMessage } from './message.js';

export type { AppAuthenticator, LocalHandler, RoutedMessage };

/** What the MQTT source needs: the broker's options (src/sources/mqtt/broker.ts). */
export type MqttSourceOptions = BrokerOptions;

export interface MqttSource extends Source {
  /** Serves one client over any byte stream (TCP, TLS, WebSocket, in-memory pair). */
  handle(stream: Duplex): void;
  /** Serves MQTT over WebSocket on `server`'s upgrade requests for `path` (subprotocol `mqtt`). */
  attachWebSocket(server: HttpServer, path?: string): void;
  /** Routes a message from the node itself (a device command) to subscribers of the tenant; not logged. */
  publish(tenant: string, msg: { topic: string; payload: Buffer | string; qos?: 0 | 1 | 2; retain?: boolean; properties?: RoutedMessage['properties'] }, opts?: { ifSubscribed?: boolean }): void;
  /** In-process subscriber (command replies, live fan-out); returns the unsubscribe function. */
  onMessage(tenant: string, filter: string, handler: LocalHandler): () => void;
  /** Disconnects every session of a device (after it was disabled, deleted or its token rotated). */
  disconnectDevice(tenant: string, device: string): void;
}

function listen(server: NetServer, host: string, port: number, setting: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') reject(new FluxgateError('PORT_IN_USE', `MQTT cannot listen on ${host}:${port}: the port is in use. Free it or change ${setting}; 0 picks any free port`, { cause: err }));
      else reject(err);
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as { port: number }).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}

class MqttSourceImpl implements MqttSource {
  readonly name = 'mqtt';
  private readonly broker: Broker;
  private readonly servers: NetServer[] = [];
  private readonly wss: WebSocketServer[] = [];
  private running = false;

  constructor(private readonly opts: MqttSourceOptions) {
    this.broker = new Broker(opts);
    opts.auth.onRevoked((tenant, device) => this.disconnectDevice(tenant, device));
  }

  async start(): Promise<SourceAddress[]> {
    const cfg = this.opts.config;
    await this.broker.open();
    const addresses: SourceAddress[] = [];
    const urlHost = cfg.host === '0.0.0.0' || cfg.host === '::' ? '127.0.0.1' : cfg.host;
    try {
      const tcp = createTcpServer((socket: Socket) => this.handle(socket));
      this.servers.push(tcp);
      const port = await listen(tcp, cfg.host, cfg.port, 'mqtt.port (--mqtt-port, FLUXGATE_MQTT_PORT)');
      addresses.push({ name: 'mqtt', url: `mqtt://${urlHost}:${port}`, port });
      if (cfg.tlsCertFile && cfg.tlsKeyFile) {
        const tls = createTlsServer({ cert: readFileSync(cfg.tlsCertFile), key: readFileSync(cfg.tlsKeyFile) }, (socket) => this.handle(socket));
        this.servers.push(tls);
        const tlsPort = await listen(tls, cfg.host, cfg.tlsPort, 'mqtt.tlsPort (--mqtt-tls-port, FLUXGATE_MQTT_TLS_PORT)');
        addresses.push({ name: 'mqtt-tls', url: `mqtts://${urlHost}:${tlsPort}`, port: tlsPort });
      }
    } catch (err) {
      await this.closeServers();
      await this.broker.shutdown();
      throw err;
    }
    this.running = true;
    return addresses;
  }

  handle(stream: Duplex): void {
    this.broker.handle(stream);
  }

  attachWebSocket(server: HttpServer, path = '/mqtt'): void {
    const wss = new WebSocketServer({
      noServer: true,
      // A WebSocket message may carry several MQTT packets; each packet is still held to maxPacketBytes.
      maxPayload: this.opts.config.maxPacketBytes * 4,
      // MQTT over WebSocket uses the subprotocol `mqtt` (§6).
      handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
    });
    this.wss.push(wss);
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const url = new URL(req.url ?? '/', 'http://x');
      if (url.pathname !== path) return;
      wss.handleUpgrade(req, socket, head, (ws) => {
        const stream = createWebSocketStream(ws);
        stream.on('error', () => ws.terminate());
        this.handle(stream);
      });
    });
  }

  publish(tenant: string, msg: Parameters<MqttSource['publish']>[1], opts?: { ifSubscribed?: boolean }): void {
    this.broker.publish(tenant, msg, opts);
  }

  onMessage(tenant: string, filter: string, handler: LocalHandler): () => void {
    return this.broker.onMessage(tenant, filter, handler);
  }

  disconnectDevice(tenant: string, device: string): void {
    for (const c of [...this.broker.connections]) {
      if (c.identity?.kind === 'device' && c.identity.tenant === tenant && c.identity.id === device) c.close(0x87, 'revoked');
    }
  }

  private async closeServers(): Promise<void> {
    for (const wss of this.wss) wss.close();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => (s.listening ? s.close(() => resolve()) : resolve()))));
    this.servers.length = 0;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    const closing = this.closeServers();
    await this.broker.shutdown();
    await closing;
  }

  status(): { ok: boolean; detail?: string } {
    if (!this.running) return { ok: false, detail: 'mqtt not started' };
    const b = this.broker;
    const detail = `${b.connections.size} connections, ${b.sessions.size} sessions, ${b.retained.count()} retained${b.paused ? ', paused by log backpressure' : ''}${b.cluster ? `; ${b.cluster.describe()}` : ''}`;
    return { ok: true, detail };
  }
}

export function createMqttSource(opts: MqttSourceOptions): MqttSource {
  return new MqttSourceImpl(opts);
}
