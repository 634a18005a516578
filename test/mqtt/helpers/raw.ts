/** @module A raw MQTT client over net.Socket for tests that must send exactly the bytes they mean (malformed, oversized, retried packet ids). */
import { connect, type Socket } from 'node:net';
import { generate, parser as createParser, type Packet } from 'mqtt-packet';
import { waitFor } from '../../helpers/wait.js';

export class RawClient {
  readonly packets: Packet[] = [];
  closed = false;
  private constructor(readonly socket: Socket, readonly version: 4 | 5) {
    const p = createParser({ protocolVersion: version });
    p.on('packet', (pk: Packet) => this.packets.push(pk));
    socket.on('data', (d: Buffer) => p.parse(d));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }

  static open(port: number, version: 4 | 5 = 5): Promise<RawClient> {
    const s = connect(port, '127.0.0.1');
    return new Promise((resolve, reject) => {
      s.once('connect', () => resolve(new RawClient(s, version)));
      s.once('error', reject);
    });
  }

  send(packet: Packet): void {
    this.socket.write(generate(packet, { protocolVersion: this.version }));
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** CONNECT and wait for CONNACK. */
  async connect(fields: { clientId?: string; username?: string; password?: string; clean?: boolean; keepalive?: number; properties?: Record<string, unknown> }): Promise<Packet> {
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clientId: fields.clientId ?? 'raw', clean: fields.clean ?? true, keepalive: fields.keepalive ?? 60, username: fields.username, password: fields.password ? Buffer.from(fields.password) : undefined, properties: fields.properties } as Packet);
    return this.next('connack');
  }

  /** Waits for the next packet of this type not yet taken. */
  async next(cmd: Packet['cmd'], timeoutMs = 5000): Promise<Packet> {
    const i = await waitFor(() => {
      const idx = this.packets.findIndex((p) => p.cmd === cmd);
      return idx >= 0 ? idx + 1 : 0;
    }, { timeoutMs, what: `${cmd} packet` });
    return this.packets.splice(i - 1, 1)[0];
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    await waitFor(() => this.closed, { timeoutMs, what: 'connection closed' });
  }

  close(): void {
    this.socket.destroy();
  }
}
