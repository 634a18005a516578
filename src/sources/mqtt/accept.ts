/**
 * @module Where a client's PUBLISH goes: device data (telemetry, events, snapshot, attributes)
 * becomes an Envelope, is appended to the log with the other messages of this turn, and only
 * once durable is routed to subscribers and answered; commands and replies are routed at once;
 * anything else is refused (topics.ts decides). Promise 1 of DESIGN.md lives here.
 *
 * Topic templates (src/templates/): a topic outside the native layout that fits a template is
 * device data of the tenant, project, device and kind the template reads from it. A device
 * connection may publish so only for itself; an application connection (a tenant API key with
 * role write or admin: a gateway) for any device of its tenant, the device being checked,
 * registered (autoProvision) or refused by the registry. A topic of another tenant is refused.
 * Refusals answer v5 0x87 (3.1.1: acknowledged and dropped), are counted, and never logged.
 * The registry's answer is remembered on the connection's cached route and device checks are
 * cached by the registry, so a steady stream costs no store call.
 */
import type { Envelope, MessageKind } from '../../core/envelope.js';
import { generateMessageId } from '../../core/ids.js';
import type { Broker } from './broker.js';
import type { DurableWaiter } from './ingest.js';
import type { RoutedMessage } from './message.js';
import type { PublishOutcome } from './metrics.js';
import type { DeviceAdmission, TemplateRegistry, TemplateTarget } from '../../templates/index.js';
import { isNativeTopic, type ClientIdentity, type PublishRoute } from './topics.js';

/**
 * Learns what became of a published message (an object with a method, not a closure: this is
 * the hot path). A waiter that also implements `durable` is handed to the log batch directly
 * and must then route the message itself (see PendingPublish in inbound.ts).
 */
export interface PublishWaiter {
  done(outcome: PublishOutcome, err?: Error): void;
  durable?(err?: Error): void;
}

/** A device message on its way to the log: routed and answered once durable. */
class LoggedPublish implements DurableWaiter {
  constructor(private readonly broker: Broker, private readonly tenant: string, private readonly msg: RoutedMessage, private readonly waiter: PublishWaiter) {}

  durable(err?: Error): void {
    if (err) return this.waiter.done('error', err);
    this.broker.route(this.tenant, this.msg);
    this.waiter.done('accepted');
  }
}

export function acceptPublish(broker: Broker, who: ClientIdentity, msg: RoutedMessage, messageId: string | undefined, waiter: PublishWaiter, route: PublishRoute): void {
  if (route.action !== 'log') {
    const templates = broker.opts.templates;
    const target = templates && templateTarget(templates, who, msg.topic, route);
    if (target) return acceptTemplated(broker, templates!, who, msg, messageId, waiter, target);
  }
  if (route.action === 'refuse') return waiter.done('forbidden');
  if (route.action === 'route') {
    broker.route(who.tenant, msg);
    return waiter.done('routed');
  }
  submit(broker, who.tenant, who.project, who.id, route.kind, msg, messageId, waiter);
}

/** The template target of a non-native topic, asked once per cached route and registry version. */
function templateTarget(templates: TemplateRegistry, who: ClientIdentity, topic: string, route: Exclude<PublishRoute, { action: 'log' }>): TemplateTarget | undefined {
  let memo = route.memo;
  if (!memo || memo.version !== templates.version) {
    const caller = who.kind === 'device' ? { tenant: who.tenant, device: who.id, project: who.project } : { tenant: who.tenant };
    memo = route.memo = { version: templates.version, target: isNativeTopic(topic) ? undefined : templates.resolve(topic, caller) };
  }
  return memo.target;
}

function acceptTemplated(broker: Broker, templates: TemplateRegistry, who: ClientIdentity, msg: RoutedMessage, messageId: string | undefined, waiter: PublishWaiter, t: TemplateTarget): void {
  if (t.refused) {
    templates.refuse(who.tenant, t.refused);
    return waiter.done('forbidden');
  }
  // A device publishing for itself (resolve checked device, tenant and project): it exists, it is connected.
  if (who.kind === 'device') return submit(broker, t.tenant, who.project, who.id, t.kind, msg, messageId, waiter);
  const admitted = (a: DeviceAdmission) => {
    if (a.outcome === 'refused') return waiter.done('forbidden');
    submit(broker, t.tenant, a.project, t.device, t.kind, msg, messageId, waiter);
  };
  const cached = templates.admitCached(t);
  if (cached) return admitted(cached);
  // First message of a device (or after its cache entry expired): one store call, shared by the device's messages meanwhile, which keep their order.
  templates.admitDevice(t).then(admitted, (err: Error) => waiter.done('error', err));
}

/** Appends a device message to the log; routed and answered once durable. */
function submit(broker: Broker, tenant: string, project: string, device: string, kind: MessageKind, msg: RoutedMessage, messageId: string | undefined, waiter: PublishWaiter): void {
  // Promise 5: under lag, snapshots are shed first (events never), and counted.
  const admission = broker.opts.admission;
  if (kind === 'snapshot' && admission?.decide('snapshot') === 'shed') {
    admission.shed(tenant, 'mqtt');
    return waiter.done('shed');
  }
  // Tenant quotas (src/sources/quota.ts): over its rate or payload size, refused and counted; never logged.
  if (broker.opts.quotas?.check(tenant, 1, msg.payload.length)) return waiter.done('quota');
  const now = Date.now();
  const envelope: Envelope = {
    tenant,
    project,
    device,
    kind,
    topic: msg.topic,
    protocol: 'mqtt',
    receiveTime: now,
    // The client's id (v5 user property `id`) makes a retried message the same message downstream.
    messageId: messageId ?? generateMessageId(now),
    payload: msg.payload,
  };
  broker.ingest.submit(envelope, waiter.durable ? (waiter as DurableWaiter) : new LoggedPublish(broker, tenant, msg, waiter));
}
