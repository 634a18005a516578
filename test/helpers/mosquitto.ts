/**
 * @module Test helper: a SECOND Mosquitto (not the machine's 127.0.0.1:1883 one) on a free port
 * with its own configuration and persistence directory in a temp dir (`persistence true`), for
 * bridge tests. It can be started late (a broker that comes up after the bridge), stopped and
 * started again on the same port and store; optional users (password file) and no anonymous
 * access then; optional TLS with a throw-away CA (openssl). Every process started here is killed when the test process exits.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { userInfo } from 'node:os';
import { freePort } from './nats-server.js';
import { tempDir, waitFor } from './wait.js';

const CANDIDATES = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto', '/usr/local/sbin/mosquitto', '/usr/local/bin/mosquitto'];
/** The mosquitto binary, or undefined (tests then skip, saying so). */
export const MOSQUITTO_BIN: string | undefined = CANDIDATES.find((p) => existsSync(p));

const alive = new Set<ChildProcess>();
process.on('exit', () => { for (const c of alive) c.kill('SIGKILL'); });

export interface Mosquitto {
  readonly port: number;
  /** mqtt://127.0.0.1:port, or mqtts:// with `tls`. */
  readonly url: string;
  /** With `tls`: the PEM of the test CA that signed the broker's certificate (for 127.0.0.1). */
  readonly caPem?: string;
  readonly dir: string;
  readonly running: boolean;
  /** Its stderr/stdout, for failure messages. */
  readonly output: string;
  start(): Promise<void>;
  /** SIGTERM (Mosquitto saves its persistence file) and waits until it is gone. */
  stop(): Promise<void>;
  /** Stops it and removes its directory. */
  destroy(): Promise<void>;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Port, configuration lines and (with TLS) the CA of a new broker in `dir`. */
async function prepare(dir: string, opts: { users?: Record<string, string>; tls?: boolean }): Promise<{ port: number; caPem?: string; conf: string[] }> {
  const port = await freePort();
  const conf = [
    `listener ${port} 127.0.0.1`,
    'persistence true',
    `persistence_location ${dir}/`,
    'persistence_file mosquitto.db',
    // The bridge's offline session must keep everything a test publishes while Fluxgate is down.
    'max_queued_messages 1000000',
    'max_inflight_messages 0',
    // As root, Mosquitto would switch to user `mosquitto`, which cannot read this private temp dir.
    `user ${userInfo().username}`,
    'log_dest stderr',
    'log_type error',
    'log_type warning',
  ];
  if (opts.users) {
    const pw = join(dir, 'passwd');
    for (const [i, [u, p]] of Object.entries(opts.users).entries()) {
      const r = spawnSync('mosquitto_passwd', [...(i === 0 ? ['-c'] : []), '-b', pw, u, p]);
      if (r.status !== 0) throw new Error(`mosquitto_passwd failed: ${r.stderr}`);
    }
    conf.push('allow_anonymous false', `password_file ${pw}`);
  } else {
    conf.push('allow_anonymous true');
  }
  let caPem: string | undefined;
  if (opts.tls) {
    // A throw-away CA and a broker certificate for 127.0.0.1 (EC keys: fast to make).
    const run = (args: string[]) => {
      const r = spawnSync('openssl', args, { cwd: dir });
      if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
    };
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    run(['req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=fluxgate-test-ca']);
    run(['req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1']);
    await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'san.ext']);
    caPem = await readFile(join(dir, 'ca.crt'), 'utf8');
    conf.push(`certfile ${join(dir, 'server.crt')}`, `keyfile ${join(dir, 'server.key')}`);
  }
  return { port, caPem, conf };
}

/**
 * Creates (and by default starts) a Mosquitto with persistence in a temp dir.
 * `users` (name → password) turns anonymous access off.
 */
export async function createMosquitto(opts: { users?: Record<string, string>; start?: boolean; tls?: boolean } = {}): Promise<Mosquitto> {
  if (!MOSQUITTO_BIN) throw new Error('mosquitto is not installed');
  const tmp = await tempDir('fluxgate-mosquitto-');
  let port: number;
  let caPem: string | undefined;
  let conf: string[];
  try {
    ({ port, caPem, conf } = await prepare(tmp.dir, opts));
  } catch (err) {
    await tmp.cleanup();
    throw err;
  }
  const confPath = join(tmp.dir, 'mosquitto.conf');
  await writeFile(confPath, conf.join('\n') + '\n');

  let child: ChildProcess | undefined;
  let output = '';
  const m: Mosquitto = {
    port, url: `${opts.tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`, dir: tmp.dir, caPem,
    get running() { return child !== undefined; },
    get output() { return output; },
    async start() {
      if (child) throw new Error('mosquitto is already running');
      const c = spawn(MOSQUITTO_BIN!, ['-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = c;
      alive.add(c);
      c.stdout!.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-20_000); });
      c.stderr!.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-20_000); });
      let exited = false;
      c.once('exit', () => { exited = true; alive.delete(c); if (child === c) child = undefined; });
      await waitFor(async () => {
        if (exited) throw new Error(`mosquitto exited at start:\n${output}`);
        return listening(port);
      }, { timeoutMs: 10_000, what: `mosquitto on port ${port}` });
    },
    async stop() {
      const c = child;
      if (!c) return;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 5000))]);
      if (child === c) { c.kill('SIGKILL'); await gone; }
    },
    async destroy() {
      await m.stop();
      await tmp.cleanup();
    },
  };
  if (opts.start !== false) {
    try { await m.start(); } catch (err) { await m.destroy(); throw err; }
  }
  return m;
}
