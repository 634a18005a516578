/**
 * @module The Source contract. A source turns device messages into Envelopes and acknowledges
 * the device (HTTP 202, MQTT PUBACK/PUBREC, CoAP 2.04) only after `Log.append` resolved.
 */

export interface SourceAddress {
  /** A listener name for logs and metrics: "http", "mqtt", "mqtt-tls", "coap"… */
  name: string;
  /** URL-ish address as bound, e.g. `mqtt://127.0.0.1:38211` (port 0 resolved to the real one). */
  url: string;
  port: number;
}

export interface Source {
  readonly name: string;
  /** Binds listeners; rejects with PORT_IN_USE naming the setting when a port is taken. */
  start(): Promise<SourceAddress[]>;
  /** Stops accepting new connections and messages, waits for in-flight appends, closes. */
  stop(): Promise<void>;
  /** Component status for /readyz. */
  status(): { ok: boolean; detail?: string };
}
