/**
 * @module The `fluxgate` command: `start` runs a node; `device …` are registry commands
 * over a running node's REST API. Errors print their code and what to do, exit 1.
 */
import { loadConfig } from './config/load.js';
import { settings } from './config/schema.js';
import { clientSettings } from './config/client.js';
import { isFluxgateError } from './core/errors.js';
import { startNode, VERSION, type RunningNode } from './node.js';
import { simulate, simulateOptions } from './simulate/simulate.js';
import { restCaller, runDeviceImport, runKey, runProject, runTenant } from './cli-tenancy.js';

const USAGE = `fluxgate ${VERSION} — IoT telemetry platform

Usage:
  fluxgate start [--http-port N] [--mqtt-port N] [--data-dir DIR] [--config FILE] [--log file] [--store embedded] …
  fluxgate device create <id> [--project P]     create a device, print its token
  fluxgate device list                          list devices
  fluxgate device get <id>
  fluxgate device disable|enable <id>
  fluxgate device rotate <id>                   new token; the old one stops working
  fluxgate device delete <id>
  fluxgate device import <file.csv|file.json> [--out F]   up to 10,000 devices, all or none; prints id,project,token
  fluxgate tenant create <id> [--name N]        platform admin: new tenant, prints its first admin key
  fluxgate tenant list
  fluxgate tenant show <id>                     its settings: own and effective (node defaults)
  fluxgate tenant set <id> [--max-devices N] [--messages-per-second N] [--burst-messages N] [--max-payload-bytes N]
                    [--raw-retention-days N] [--rollup-1m-retention-days N] [--rollup-1h-retention-days N]
                                                platform admin: quotas and retention (0 = unlimited/forever; "default" unsets)
  fluxgate key create --role admin|write|read [--name N]   prints the new API key once
  fluxgate key list
  fluxgate key revoke <id>
  fluxgate project create <name>
  fluxgate project list
  fluxgate simulate --devices N --duration 30s [--rate 1] [--protocol http|mqtt] [--mqtt-port 1883] [--qos 1]
                                                simulated devices against a running node
  fluxgate help [start]

Registry and simulate commands talk to a running node: --url (FLUXGATE_URL, default http://127.0.0.1:8080)
and --key (FLUXGATE_ADMIN_KEY, default: read from <data-dir>/admin.key); with the platform admin key,
--tenant T acts on tenant T (default: the tenant "default"); a tenant API key acts on its own tenant.`;

function parseArgs(argv: string[]): { positional: string[]; flags: Record<string, string> } {
  const positional: string[] = [];
  const flags: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      if (eq > 0) flags[a.slice(2, eq)] = a.slice(eq + 1);
      else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) flags[a.slice(2)] = argv[++i];
      else flags[a.slice(2)] = 'true';
    } else positional.push(a);
  }
  return { positional, flags };
}

function startHelp(): string {
  const rows = settings().map((s) => `  --${s.flag.padEnd(28)} ${s.env.padEnd(36)} ${(s.schema.description ?? '').split('. ')[0]}`);
  return `fluxgate start — run one node\n\nEvery setting: flag, environment twin, meaning (defaults in docs/configuration.md).\n  --config FILE                  FLUXGATE_CONFIG                      JSON config file\n${rows.join('\n')}`;
}

/** A backend URL without its password. */
const redact = (url: string) => url.replace(/\/\/([^:@/]+):[^@/]*@/g, '//$1:***@');

function banner(node: RunningNode): string {
  const at = (name: string) => node.addresses.find((a) => a.name === name)?.url;
  const http = node.httpUrl;
  const lines = [
    `Fluxgate ${VERSION} is running — data in ${node.dataDir}`,
    `  log        ${node.config.log.backend === 'file' ? `write-ahead log in ${node.dataDir}/log` : `NATS JetStream ${redact(node.config.log.backend)}`}` +
      `   store ${node.config.store.backend === 'embedded' ? `SQLite in ${node.dataDir}/store` : `PostgreSQL ${redact(node.config.store.backend)}`}`,
    `  HTTP       ${http}   REST /api/v1 · OpenAPI ${http}/docs · ${http}/metrics · ${http}/readyz`,
  ];
  if (at('mqtt')) lines.push(`  MQTT       ${at('mqtt')}${at('mqtt-tls') ? `   TLS ${at('mqtt-tls')}` : ''}   WebSocket ${at('mqtt-ws')}`);
  lines.push(node.adminKeyGenerated
    ? `  admin key  ${node.adminKey}   (generated now, shown once; kept in ${node.dataDir}/admin.key)`
    : `  admin key  from ${node.config.adminKey ? 'FLUXGATE_ADMIN_KEY / --admin-key' : `${node.dataDir}/admin.key`}`);
  lines.push('', 'Try next:',
    `  1. create a device:  npm run fluxgate -- device create thermo-1 --url ${http}`,
    `  2. send telemetry:   curl -H "Authorization: Bearer <token from 1>" -d '{"temperature":21.5}' ${http}/api/v1/devices/thermo-1/telemetry`,
    `     then read it:     curl -H "Authorization: Bearer <admin key>" ${http}/api/v1/devices/thermo-1/latest`, '');
  return lines.join('\n');
}

async function runStart(flags: Record<string, string>): Promise<void> {
  if (flags.help) { console.log(startHelp()); return; }
  const config = loadConfig({ flags });
  const node = await startNode(config);
  process.stdout.write(banner(node) + '\n');
  node.logger.info({ addresses: node.addresses, dataDir: node.dataDir }, 'node started');
  let signals = 0;
  const onSignal = (sig: string) => {
    if (++signals > 1) { node.logger.warn('second signal: exiting without draining'); process.exit(1); }
    node.logger.info({ signal: sig }, 'stopping: no new messages, draining, flushing');
    node.stop().then(() => process.exit(0), (err) => { node.logger.error({ err }, 'stop failed'); process.exit(1); });
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
}

function adminClient(flags: Record<string, string>): { url: string; key: string } {
  const client = clientSettings(flags);
  if (!client.key) throw new Error(`no admin key: pass --key, set FLUXGATE_ADMIN_KEY, or run from the directory whose data dir holds admin.key (looked in ${client.keySource})`);
  return { url: client.url, key: client.key };
}

async function runDevice(args: string[], flags: Record<string, string>): Promise<void> {
  const [verb, id] = args;
  const client = adminClient(flags);
  const call = restCaller(client.url, client.key, flags.tenant);
  const need = () => { if (!id) throw new Error(`usage: fluxgate device ${verb} <id>`); return encodeURIComponent(id); };
  switch (verb) {
    case 'create': {
      const d = await call('POST', '/api/v1/devices', { id: need() && id, ...(flags.project ? { project: flags.project } : {}) });
      console.log(`device ${d.id} created in project ${d.project}\ntoken: ${d.token}\n(shown once: keep it; rotate with \`fluxgate device rotate ${d.id}\`)`);
      return;
    }
    case 'list': {
      let after: string | undefined;
      do {
        const page = await call('GET', `/api/v1/devices?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
        for (const d of page.items) console.log(`${d.id}\t${d.project}\t${d.disabled ? 'disabled' : 'enabled'}\t${new Date(d.createdAt).toISOString()}`);
        after = page.next;
      } while (after);
      return;
    }
    case 'get': console.log(JSON.stringify(await call('GET', `/api/v1/devices/${need()}`), null, 2)); return;
    case 'disable': case 'enable': await call('PATCH', `/api/v1/devices/${need()}`, { disabled: verb === 'disable' }); console.log(`device ${id} ${verb}d`); return;
    case 'rotate': console.log(`token: ${(await call('POST', `/api/v1/devices/${need()}/token`)).token}`); return;
    case 'delete': await call('DELETE', `/api/v1/devices/${need()}`); console.log(`device ${id} deleted`); return;
    case 'import': return runDeviceImport(client.url, client.key, flags.tenant, args.slice(1), flags);
    default: throw new Error(`unknown device command ${JSON.stringify(verb ?? '')}\n\n${USAGE}`);
  }
}

async function main(argv: string[]): Promise<void> {
  const { positional, flags } = parseArgs(argv);
  const [command, ...rest] = positional;
  switch (command) {
    case 'start': return runStart(flags);
    case 'device': return runDevice(rest, flags);
    case 'tenant': case 'key': case 'project': {
      const { url, key } = adminClient(flags);
      const call = restCaller(url, key, flags.tenant);
      return command === 'tenant' ? runTenant(call, rest, flags) : command === 'key' ? runKey(call, rest, flags) : runProject(call, rest);
    }
    case 'simulate': {
      const { url, key } = adminClient(flags);
      await simulate(simulateOptions(flags, url, key));
      return;
    }
    case 'help': case undefined: console.log(rest[0] === 'start' ? startHelp() : USAGE); return;
    case 'version': console.log(VERSION); return;
    default: throw new Error(`unknown command ${JSON.stringify(command)}\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  if (isFluxgateError(err)) console.error(`fluxgate: ${err.code}: ${err.message}`);
  else console.error(`fluxgate: ${(err as Error).message}`);
  process.exit(1);
});
