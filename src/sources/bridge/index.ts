/**
 * @module Bridge source (public surface of src/sources/bridge/): Fluxgate subscribes to external
 * MQTT brokers and logs what they send, acknowledging each message only once the log holds it
 * durably (./bridge.ts), exactly once across a crash (./journal.ts), mapped to tenant, project,
 * device and kind by a topic template (./mapping.ts).
 *
 * Bridges come from the configuration file (`bridges`, fixed for the node's life) and from
 * POST /api/v1/bridges (kept in the store as objects of kind `bridge`, started at once and
 * again at every start, stopped and forgotten by DELETE). Names are shared by both.
 * A bridge names a platform template of the configuration by id (`templates`) or gives one
 * inline. Bridges are platform-wide: a template with {tenant} may route messages to any tenant, so
 * only the platform admin manages them (src/api/rest/bridges.ts). Passwords and TLS keys of
 * REST bridges are kept in the store as given (the bridge needs them to log in) and never shown.
 * /readyz gets one component `bridge:<name>` per bridge; a disconnected bridge is shown there
 * but does not make the node unready (why: Bridge.component()).
 * Where bridges run: `active()` (node.ts: with a nats:// log, only the processing-lease holder,
 * so the nodes of a cluster never take one session from each other); every node knows every
 * bridge and re-reads REST bridges from the store every `refreshMs`, so the holder picks up a
 * bridge created or deleted through another node. The redelivery journal is a file under
 * <dataDir>/bridges on an embedded node and in JetStream in a cluster (./journal-jetstream.ts),
 * so after the holder is killed the next holder loads it before subscribing and a message the
 * dead holder logged but had not acknowledged keeps its message id when the broker redelivers
 * it (stored once).
 */
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Envelope } from '../../core/envelope.js';
import { FluxgateError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { Log } from '../../log/log.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Store } from '../../stores/store.js';
import { compileTemplate, type CompiledTemplate } from '../../templates/template.js';
import type { Source, SourceAddress } from '../source.js';
import { Bridge, type BridgeStatus } from './bridge.js';
import { clientIdOf, definitionProblems, inlineTemplate, publicView, schemaProblems, withDefaults, type BridgeDefinition } from './definition.js';
import { journalPath, RedeliveryJournal, type Journal } from './journal.js';
import { JetStreamJournal, journalSession } from './journal-jetstream.js';
import { BridgeMetrics } from './metrics.js';
import type { DeviceAdmitter } from './mapping.js';

export type { BridgeDefinition } from './definition.js';
export type { BridgeStatus } from './bridge.js';
export { schemaProblems, publicView } from './definition.js';

/** Object kind under which REST bridges are stored. */
export const BRIDGE_OBJECT_KIND = 'bridge';
/** Bridges are platform-wide; their objects live under this tenant key. */
export const PLATFORM_TENANT = '*';

/** The node's template registry (src/templates): platform templates by id, and device admission. */
export interface TemplateLookup extends DeviceAdmitter {
  platformTemplate(id: string): CompiledTemplate | undefined;
}

export interface BridgeSourceOptions {
  configured: readonly BridgeDefinition[];
  log: Log;
  store: Store;
  metrics: Metrics;
  logger: Logger;
  dataDir: string;
  templates: TemplateLookup;
  onDurable?: (envelopes: Envelope[]) => void;
  /**
   * Whether bridges run on this node now (cluster: only the processing-lease holder runs them,
   * so nodes do not take one session from each other); undefined: always. Checked every second.
   */
  active?: () => boolean;
  /** Why this node is standby, for status (e.g. the lease holder). */
  standbyDetail?: () => string;
  /** How often REST bridges are re-read from the store (made or deleted through another node), ms. */
  refreshMs?: number;
  /** A nats:// log: redelivery journals are kept in JetStream there (./journal-jetstream.ts), not in files. */
  cluster?: { servers: string[]; replicas: number };
}

export interface BridgeView {
  definition: Record<string, unknown>;
  origin: 'config' | 'api';
  status: BridgeStatus | { name: string; state: 'not started' | 'standby'; problems: string[]; detail?: string };
}

interface Entry { def: BridgeDefinition; origin: 'config' | 'api'; bridge?: Bridge; problems?: string[] }

export class BridgeSource implements Source {
  readonly name = 'bridges';
  private readonly entries = new Map<string, Entry>();
  private readonly bridgeMetrics: BridgeMetrics;
  private started = false;
  /** Bridges run on this node now. */
  private running = false;
  private timer?: NodeJS.Timeout;
  private lastRefresh = 0;
  /** Serialises start/stop/refresh work. */
  private work: Promise<void> = Promise.resolve();

  constructor(private readonly opts: BridgeSourceOptions) {
    this.bridgeMetrics = new BridgeMetrics(opts.metrics, () => [...this.entries.values()].flatMap((e) => (e.bridge ? [e.bridge] : [])));
  }

  /** Problems of the configured bridges (CONFIG_INVALID at start names them all). */
  private configProblems(): string[] {
    const problems: string[] = [];
    const names = new Set<string>();
    this.opts.configured.forEach((def, i) => {
      if (names.has(def.name)) problems.push(`bridges[${i}].name: ${def.name} is used twice`);
      names.add(def.name);
      problems.push(...definitionProblems(def, `bridges[${i}].`, this.templateExists()));
    });
    return problems;
  }

  private templateExists(): (id: string) => boolean {
    return (id) => this.opts.templates.platformTemplate(id) !== undefined;
  }

  private templateOf(def: BridgeDefinition): () => CompiledTemplate {
    if (typeof def.template !== 'string') {
      const compiled = compileTemplate(inlineTemplate(def, def.template));
      return () => compiled;
    }
    const id = def.template;
    return () => {
      const t = this.opts.templates.platformTemplate(id);
      if (!t) throw new Error(`topic template ${id} no longer exists`);
      return t;
    };
  }

  async start(): Promise<SourceAddress[]> {
    const problems = this.configProblems();
    if (problems.length) throw new FluxgateError('CONFIG_INVALID', `bridges have ${problems.length} problem(s):\n  - ${problems.join('\n  - ')}`, { details: { problems } });
    for (const def of this.opts.configured) this.entries.set(def.name, { def, origin: 'config' });
    await this.refresh();
    this.started = true;
    await this.serial(() => this.sync());
    this.timer = setInterval(() => { void this.serial(() => this.sync()).catch((err) => this.opts.logger.warn({ err }, 'bridge refresh failed; trying again')); }, 1000);
    this.timer.unref();
    return [];
  }

  private serial(fn: () => Promise<void>): Promise<void> {
    const run = this.work.then(fn);
    this.work = run.catch(() => undefined);
    return run;
  }

  private wanted(): boolean {
    return this.started && (this.opts.active ? this.opts.active() : true);
  }

  /** Starts or stops every bridge as this node's role says, and picks up REST bridges made or deleted elsewhere. */
  private async sync(): Promise<void> {
    if (!this.started) return;
    if (Date.now() - this.lastRefresh >= (this.opts.refreshMs ?? 5000)) await this.refresh();
    const want = this.wanted();
    if (want !== this.running) {
      this.running = want;
      this.opts.logger.info({ bridges: this.entries.size }, want ? 'bridges start on this node' : 'bridges stop on this node (standby)');
    }
    for (const e of this.entries.values()) {
      if (want && !e.bridge && !e.problems) await this.run(e).catch((err) => this.opts.logger.error({ err, bridge: e.def.name }, 'bridge could not start'));
      if (!want && e.bridge) { const b = e.bridge; e.bridge = undefined; await b.stop(); }
    }
  }

  /** Reads the REST bridges from the store: new ones are added (started by sync), deleted ones stopped. */
  private async refresh(): Promise<void> {
    this.lastRefresh = Date.now();
    const stored = await this.opts.store.listObjects(BRIDGE_OBJECT_KIND, PLATFORM_TENANT);
    const ids = new Set(stored.map((o) => o.id));
    for (const [name, e] of this.entries) {
      if (e.origin === 'api' && !ids.has(name)) {
        this.entries.delete(name);
        await e.bridge?.remove();
      }
    }
    for (const o of stored) {
      if (this.entries.get(o.id)?.origin === 'api') continue;
      const def = withDefaults(o.body);
      const p = [...schemaProblems(def), ...(schemaProblems(def).length ? [] : definitionProblems(def, '', this.templateExists()))];
      if (this.entries.has(o.id)) {
        if (!this.warnedShadow.has(o.id)) this.opts.logger.error({ bridge: o.id }, 'a stored bridge has the name of a bridge of the configuration file, which wins');
        this.warnedShadow.add(o.id);
        continue;
      }
      if (p.length) this.opts.logger.error({ bridge: o.id, problems: p }, 'stored bridge not started');
      this.entries.set(o.id, { def, origin: 'api', problems: p.length ? p : undefined });
    }
  }

  private readonly warnedShadow = new Set<string>();

  private nats?: Promise<{ nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager }>;

  /** The NATS connection of the cluster journals, made at the first bridge start (shared by all bridges). */
  private jetstream(servers: string[]): Promise<{ nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager }> {
    this.nats ??= (async () => {
      const nc = await connect({ servers, name: 'fluxgate-bridges', timeout: 5000, maxReconnectAttempts: -1, reconnectTimeWait: 250, pingInterval: 2000, maxPingOut: 2 });
      return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
    })();
    this.nats.catch(() => { this.nats = undefined; });
    return this.nats;
  }

  private async journalOf(def: BridgeDefinition): Promise<Journal> {
    const cluster = this.opts.cluster;
    if (!cluster) return new RedeliveryJournal(journalPath(join(this.opts.dataDir, 'bridges'), def.name, def.url, clientIdOf(def)));
    const { js, jsm } = await this.jetstream(cluster.servers);
    return new JetStreamJournal({ js, jsm, session: journalSession(def.name, def.url, clientIdOf(def)), replicas: cluster.replicas });
  }

  private async run(e: Entry): Promise<void> {
    const bridge = new Bridge(e.def, {
      log: this.opts.log, store: this.opts.store, metrics: this.opts.metrics, bridgeMetrics: this.bridgeMetrics,
      logger: this.opts.logger.child({ bridge: e.def.name }), journal: await this.journalOf(e.def),
      template: this.templateOf(e.def), admitter: this.opts.templates, onDurable: this.opts.onDurable,
    });
    await bridge.start();
    e.bridge = bridge;
  }

  async stop(): Promise<void> {
    this.started = false;
    clearInterval(this.timer);
    await this.serial(async () => {
      await Promise.all([...this.entries.values()].map(async (e) => { const b = e.bridge; e.bridge = undefined; await b?.stop(); }));
      this.running = false;
      const nats = this.nats;
      this.nats = undefined;
      if (nats) await nats.then(({ nc }) => nc.drain(), () => undefined).catch(() => undefined);
    });
  }

  status(): { ok: boolean; detail?: string } {
    const all = [...this.entries.values()];
    const up = all.filter((e) => e.bridge?.connected()).length;
    return { ok: true, detail: `${up} of ${all.length} bridges connected` };
  }

  /** /readyz components, one per bridge (`bridge:<name>`). */
  components(): Record<string, { ok: boolean; detail?: string }> {
    return Object.fromEntries([...this.entries.values()].map((e) => [`bridge:${e.def.name}`, e.bridge ? e.bridge.component() : e.problems ? { ok: true, detail: `not started: ${e.problems.join('; ')}` } : { ok: true, detail: this.standby() }]));
  }

  private view(e: Entry): BridgeView {
    return {
      definition: publicView(e.def), origin: e.origin,
      status: e.bridge ? e.bridge.status() : e.problems ? { name: e.def.name, state: 'not started', problems: e.problems } : { name: e.def.name, state: 'standby', problems: [], detail: this.standby() },
    };
  }

  private standby(): string {
    return `standby: bridges run on the node holding the processing lease${this.opts.standbyDetail ? ` (${this.opts.standbyDetail()})` : ''}`;
  }

  list(): BridgeView[] {
    return [...this.entries.values()].sort((a, b) => a.def.name.localeCompare(b.def.name)).map((e) => this.view(e));
  }

  get(name: string): BridgeView {
    const e = this.entries.get(name);
    if (!e) throw new FluxgateError('BRIDGE_NOT_FOUND', `no bridge ${name}: list them with GET /api/v1/bridges`);
    return this.view(e);
  }

  /** Validates, stores and starts a bridge (on a standby node: stores it); BAD_REQUEST names every wrong field. */
  async create(body: unknown): Promise<BridgeView> {
    if (!this.started) throw new FluxgateError('SHUTTING_DOWN', 'bridges are not running on this node right now: retry shortly');
    const def = withDefaults(body);
    const schema = schemaProblems(def);
    const problems = schema.length ? schema : definitionProblems(def, '', this.templateExists());
    if (problems.length) throw new FluxgateError('BAD_REQUEST', `the bridge has ${problems.length} problem(s): ${problems.join('; ')}`, { details: { problems } });
    let view: BridgeView | undefined;
    await this.serial(async () => { view = await this.createNow(def); });
    return view!;
  }

  private async createNow(def: BridgeDefinition): Promise<BridgeView> {
    if (this.entries.has(def.name)) throw new FluxgateError('BRIDGE_EXISTS', `a bridge named ${def.name} already exists (${this.entries.get(def.name)!.origin === 'config' ? 'in the configuration file' : 'created over REST'}): pick another name or DELETE it first`);
    const entry: Entry = { def, origin: 'api' };
    this.entries.set(def.name, entry);
    try {
      await this.opts.store.putObject({ kind: BRIDGE_OBJECT_KIND, tenant: PLATFORM_TENANT, id: def.name, body: def, updatedAt: Date.now() });
      // A standby node only stores it: the node that runs bridges picks it up within refreshMs.
      if (this.wanted()) await this.run(entry);
    } catch (err) {
      this.entries.delete(def.name);
      await entry.bridge?.stop();
      throw err;
    }
    return this.view(entry);
  }

  /** Stops a REST bridge and forgets it (its session on the external broker stays until it expires). */
  async remove(name: string): Promise<void> {
    await this.serial(() => this.removeNow(name));
  }

  private async removeNow(name: string): Promise<void> {
    const e = this.entries.get(name);
    if (!e) throw new FluxgateError('BRIDGE_NOT_FOUND', `no bridge ${name}: list them with GET /api/v1/bridges`);
    if (e.origin === 'config') throw new FluxgateError('FORBIDDEN', `bridge ${name} comes from the configuration file: remove it there and restart the node`);
    this.entries.delete(name);
    await this.opts.store.deleteObject(BRIDGE_OBJECT_KIND, PLATFORM_TENANT, name);
    await e.bridge?.remove();
  }
}

export function createBridgeSource(opts: BridgeSourceOptions): BridgeSource {
  return new BridgeSource(opts);
}
