/**
 * @module Last will (§3.1.2.5): published when a connection ends without a normal DISCONNECT,
 * after the v5 Will Delay Interval or when the session ends, whichever comes first
 * [MQTT-3.1.3-9]; a client that resumes the session in time cancels it. A device's will
 * follows the same rules as its publishes (its own topics only; device data is logged first).
 */
import type { Broker } from './broker.js';
import type { Will } from './connection.js';
import type { Session } from './session.js';
import type { ClientIdentity } from './topics.js';

export function publishWill(broker: Broker, who: ClientIdentity, origin: string, will: Will): void {
  const msg = { ...will.msg, origin };
  if (will.expirySeconds !== undefined) msg.expiresAt = Date.now() + will.expirySeconds * 1000;
  broker.accept(who, msg, undefined, {
    done(outcome, err) {
      broker.metrics.publish(who.tenant, msg.qos, outcome);
      if (err) broker.logger.warn({ err, topic: msg.topic }, 'mqtt will not logged');
    },
  });
}

export function scheduleWill(broker: Broker, session: Session, will: Will): void {
  const publish = () => publishWill(broker, session.identity, session.key, will);
  const delay = Math.min(will.delaySeconds, session.expirySeconds);
  if (delay <= 0) return publish();
  session.pendingWill = publish;
  session.willTimer = setTimeout(() => {
    session.willTimer = undefined;
    session.pendingWill = undefined;
    publish();
  }, delay * 1000);
  session.willTimer.unref();
}
