/**
 * @module Where a client's PUBLISH goes: device data (telemetry, events, snapshot, attributes)
 * becomes an Envelope, is appended to the log with the other messages of this turn, and only
 * once durable is routed to subscribers and answered; commands and replies are routed at once;
 * anything else is refused (topics.ts decides). Promise 1 of DESIGN.md lives here.
 */
import type { Envelope } from '../../core/envelope.js';
import { generateMessageId } from '../../core/ids.js';
import type { Broker } from './broker.js';
import type { DurableWaiter } from './ingest.js';
import type { RoutedMessage } from './message.js';
import type { PublishOutcome } from './metrics.js';
import type { ClientIdentity, PublishRoute } from './topics.js';

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
  if (route.action === 'refuse') return waiter.done('forbidden');
  if (route.action === 'route') {
    broker.route(who.tenant, msg);
    return waiter.done('routed');
  }
  // Promise 5: under lag, snapshots are shed first (events never), and counted.
  const admission = broker.opts.admission;
  if (route.kind === 'snapshot' && admission?.decide('snapshot') === 'shed') {
    admission.shed(who.tenant, 'mqtt');
    return waiter.done('shed');
  }
  const now = Date.now();
  const envelope: Envelope = {
    tenant: who.tenant,
    project: who.project,
    device: who.id,
    kind: route.kind,
    topic: msg.topic,
    protocol: 'mqtt',
    receiveTime: now,
    // The client's id (v5 user property `id`) makes a retried message the same message downstream.
    messageId: messageId ?? generateMessageId(now),
    payload: msg.payload,
  };
  broker.ingest.submit(envelope, waiter.durable ? (waiter as DurableWaiter) : new LoggedPublish(broker, who.tenant, msg, waiter));
}
