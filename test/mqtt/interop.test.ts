/**
 * @module Interop: Debian's mosquitto_pub / mosquitto_sub (2.0.11) against Fluxgate over TCP,
 * MQTT over WebSocket (`attachWebSocket` on a plain HTTP server; mosquitto's clients have no
 * WebSocket transport, so mqtt.js speaks it) and TLS. Skips, saying so, when the clients are
 * absent outside CI (.ci/run installs mosquitto-clients).
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { tempDir, waitFor } from '../helpers/wait.js';
import { Clients, collect, startBroker, type TestBroker } from './helpers/broker.js';

const haveMosquitto = spawnSync('mosquitto_pub', ['--help']).error === undefined;
const haveOpenssl = spawnSync('openssl', ['version']).error === undefined;
const skip = haveMosquitto ? false : process.env.CI ? false : 'mosquitto-clients not installed (apt-get install mosquitto-clients)';

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args);
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('close', (code) => resolve({ code, out, err }));
  });
}

describe('mqtt - interop with mosquitto clients', { skip }, () => {
  let b: TestBroker;
  let token: string;
  before(async () => {
    b = await startBroker();
    token = await b.addDevice('d1', { tenant: 't1' });
  });
  after(() => b.stop());

  for (const v of ['mqttv311', 'mqttv5'] as const) {
    it(`mosquitto_pub -V ${v}: QoS 0/1/2 publishes are logged; retained reaches a late subscriber`, async () => {
      const before = (await b.log.read(`g-${v}`, 10_000, 0)).records.length;
      for (const q of ['0', '1', '2']) {
        const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', v, '-u', 'd1', '-P', token, '-q', q, '-t', 'devices/d1/telemetry', '-m', `{"q":${q}}`]);
        assert.equal(r.code, 0, r.err);
      }
      const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', v, '-u', token, '-q', '1', '-r', '-t', 'devices/d1/attributes', '-m', `{"v":"${v}"}`]);
      assert.equal(r.code, 0, r.err);
      const got = await waitFor(async () => {
        const recs = (await b.log.read(`g-${v}`, 10_000, 0)).records;
        return recs.length + before >= 4 ? recs : undefined;
      });
      assert.deepEqual(got.slice(-4).map((x) => Buffer.from(x.envelope.payload).toString()), ['{"q":0}', '{"q":1}', '{"q":2}', `{"v":"${v}"}`]);
      const sub = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', v, '-u', 'app:t1', '-P', 'app-secret', '-t', 'devices/+/attributes', '-C', '1', '-v', '-W', '5']);
      assert.equal(sub.out.trim(), `devices/d1/attributes {"v":"${v}"}`);
    });
  }

  it('mosquitto_sub receives device telemetry live (v5, QoS 1)', async () => {
    const c = new Clients();
    const subscribes = async () => ((await b.metrics.registry.getSingleMetric('fluxgate_mqtt_packets_received_total')!.get()).values.find((x) => x.labels.type === 'subscribe')?.value ?? 0);
    const before = await subscribes();
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', 'mqttv5', '-u', 'app:t1', '-P', 'app-secret', '-q', '1', '-t', 'devices/+/telemetry', '-C', '3', '-v', '-d', '-W', '10']);
    let out = '';
    sub.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => sub.on('close', resolve));
    try {
      // mosquitto_sub's stdout is block-buffered into a pipe, so readiness is seen on the broker's side.
      await waitFor(async () => (await subscribes()) > before, { what: 'mosquitto_sub subscribed' });
      const dev = await c.connect(b.url, { protocolVersion: 5, username: token });
      for (let i = 0; i < 3; i++) await dev.publishAsync('devices/d1/telemetry', `{"i":${i}}`, { qos: 1 });
      const code = await exited;
      assert.equal(code, 0, out);
      const lines = out.split('\n').filter((l) => l.startsWith('devices/'));
      assert.deepEqual(lines, [0, 1, 2].map((i) => `devices/d1/telemetry {"i":${i}}`));
    } finally {
      sub.kill();
      await c.closeAll();
    }
  });

  it('mosquitto_pub with a wrong token is refused (bad user name or password / not authorised)', async () => {
    const r5 = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', 'mqttv5', '-u', 'nope', '-t', 'devices/d1/telemetry', '-m', '{}']);
    assert.notEqual(r5.code, 0);
    assert.match(r5.err, /Bad user name or password|not authori[sz]ed/i);
    const r3 = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-V', 'mqttv311', '-u', 'nope', '-t', 'devices/d1/telemetry', '-m', '{}']);
    assert.notEqual(r3.code, 0);
    assert.match(r3.err, /bad user name or password/i);
  });
});

describe('mqtt - WebSocket and TLS listeners', () => {
  it('MQTT over WebSocket on /mqtt of an HTTP server (v3.1.1 and v5); other paths are left alone', async () => {
    const b = await startBroker();
    const http = createServer((_req, res) => res.end('http'));
    http.on('upgrade', (req, socket) => {
      if (req.url !== '/mqtt') socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
    });
    b.source.attachWebSocket(http);
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const port = (http.address() as { port: number }).port;
    const c = new Clients();
    try {
      const token = await b.addDevice('d1', { tenant: 't1' });
      const sub = await c.connect(`ws://127.0.0.1:${port}/mqtt`, { protocolVersion: 4, username: 'app:t1', password: 'app-secret' });
      const got = collect(sub);
      await sub.subscribeAsync('devices/+/telemetry', { qos: 1 });
      const dev = await c.connect(`ws://127.0.0.1:${port}/mqtt`, { protocolVersion: 5, username: token });
      await dev.publishAsync('devices/d1/telemetry', '{"ws":true}', { qos: 1 });
      await waitFor(() => got.length === 1);
      assert.equal(got[0].payload.toString(), '{"ws":true}');
      const recs = (await b.log.read('ws', 100, 0)).records;
      assert.equal(Buffer.from(recs[0].envelope.payload).toString(), '{"ws":true}');
      await assert.rejects(c.connect(`ws://127.0.0.1:${port}/other`, { protocolVersion: 4, username: token, connectTimeout: 2000 }));
    } finally {
      await c.closeAll();
      await b.stop();
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('MQTT over TLS when mqtt.tlsCertFile and mqtt.tlsKeyFile are set', { skip: haveOpenssl ? false : 'openssl not installed' }, async () => {
    const tmp = await tempDir();
    const cert = join(tmp.dir, 'cert.pem');
    const key = join(tmp.dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost'], { stdio: 'ignore' });
    const b = await startBroker({ mqtt: { tlsPort: 0, tlsCertFile: cert, tlsKeyFile: key } });
    const c = new Clients();
    try {
      const addrs = await (async () => b.source.status())();
      assert.ok(addrs.ok);
      const tlsPort = b.tlsPort!;
      const token = await b.addDevice('d1');
      const dev = await c.connect(`mqtts://127.0.0.1:${tlsPort}`, { protocolVersion: 5, username: token, ca: readFileSync(cert), rejectUnauthorized: false });
      await dev.publishAsync('devices/d1/telemetry', '{"tls":1}', { qos: 1 });
      const recs = (await b.log.read('tls', 100, 0)).records;
      assert.equal(Buffer.from(recs[0].envelope.payload).toString(), '{"tls":1}');
    } finally {
      await c.closeAll();
      await b.stop();
      await tmp.cleanup();
    }
  });
});
