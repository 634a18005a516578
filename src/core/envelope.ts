/**
 * @module The one message type. Every source turns one device message into an Envelope;
 * the log stores Envelopes; processing decodes them. Nothing downstream sees a socket.
 */

/** What a message is for: events are never shed, snapshots may be shed first under overload. */
export type MessageKind = 'telemetry' | 'event' | 'snapshot' | 'attributes';
export const MESSAGE_KINDS: readonly MessageKind[] = ['telemetry', 'event', 'snapshot', 'attributes'];

/** Which door a message came through (a metric label and a debugging aid). */
export type Protocol = 'http' | 'mqtt' | 'coap' | 'ws' | 'bridge';

export interface Envelope {
  /** Tenant the device belongs to; part of every key downstream. */
  tenant: string;
  project: string;
  device: string;
  kind: MessageKind;
  /** The MQTT topic, or the equivalent native topic for other protocols (`devices/{id}/telemetry`). */
  topic: string;
  protocol: Protocol;
  /**
   * Device time in ms when the source knows it (HTTP `ts`, a template); otherwise absent and
   * processing takes `ts` from the payload, else `receiveTime`.
   */
  deviceTime?: number;
  /** When this node received the message, ms since the epoch. */
  receiveTime: number;
  /**
   * Stable id of the message: the client's (JSON `id`, MQTT 5 user property `id`,
   * HTTP `Idempotency-Key`) or one the source generated. Stores are idempotent on it.
   */
  messageId: string;
  /** The payload exactly as received. */
  payload: Uint8Array;
}

/** Native topic of a device message of a kind, as used in INTERFACE.md. */
export function nativeTopic(device: string, kind: MessageKind): string {
  const suffix = kind === 'event' ? 'events' : kind;
  return `devices/${device}/${suffix}`;
}
