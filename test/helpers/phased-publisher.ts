/**
 * @module Test helper for crash tests: an MQTT 5 publisher that sends numbered messages with 20
 * in flight, released in phases (`openUpTo(n)` lets it go on up to message n), so a test can
 * kill a node while publishes are in flight. `accepted` holds what the broker acknowledged
 * (PUBACK / PUBCOMP): the messages the test may require to be stored.
 */
import mqtt from 'mqtt';

export interface Numbered { n: number; qos: 1 | 2; payload: Buffer }

export interface PhasedPublisher<M extends Numbered> {
  accepted: Map<number, M>;
  openUpTo(n: number): void;
  /** Publishes the rest, then disconnects. */
  finish(): Promise<void>;
}

export async function startPhasedPublisher<M extends Numbered>(url: string, clientId: string, total: number, messageOf: (n: number) => M, topicOf: (m: M) => string): Promise<PhasedPublisher<M>> {
  const pub = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 200, clientId });
  await new Promise<void>((resolve, reject) => { pub.once('connect', () => resolve()); pub.once('error', reject); });
  const accepted = new Map<number, M>();
  let next = 0;
  let limit = 0;
  let opened: () => void = () => undefined;
  let gate = new Promise<void>((r) => { opened = r; });
  const openUpTo = (n: number) => { limit = n; const o = opened; gate = new Promise<void>((r) => { opened = r; }); o(); };
  const worker = async () => {
    while (next < total) {
      if (next >= limit) { await gate; continue; }
      const m = messageOf(next++);
      await pub.publishAsync(topicOf(m), m.payload, { qos: m.qos });
      accepted.set(m.n, m);
    }
  };
  const publishing = Promise.all(Array.from({ length: 20 }, worker));
  return {
    accepted,
    openUpTo,
    async finish() {
      openUpTo(total);
      await publishing;
      await pub.endAsync();
    },
  };
}
