/**
 * @module The cluster log's only public surface: `createJetStreamLog(opts)` returns a `Log`
 * on a NATS JetStream stream (default `FLUXGATE`, subjects `fluxgate.msg.>`). Call `open()`
 * before use (it connects and creates or updates the stream, safe when several nodes start at
 * once) and `close()` at the end (it waits for appends in flight, then drains).
 *
 * What it promises, and how:
 * - Acknowledged means kept: `append` resolves once JetStream returned a PubAck for every
 *   envelope (on R3, stored by a quorum). Each carries `Nats-Msg-Id` = tenant/device/messageId,
 *   so a retried append inside the duplicate window (default 2 min) is stored once. Durability
 *   of one server against power loss depends on its fsync setting; against process death and
 *   against losing a server, use replicas 3.
 * - Unreachable JetStream: appends reject at once (connection down) or after appendTimeoutMs
 *   (no answer) with LOG_UNAVAILABLE; pressure().overLimit is true while disconnected or while
 *   the consumer lag cannot be read, so sources answer "slow down"; reconnection is automatic.
 * - Offsets are stream sequences. A group is a durable pull consumer `fg_<group>` (group name
 *   encoded as a token), explicit acks; commit resolves once the server confirmed the batch's
 *   acks (group.ts). A commit of records this process did not hand out (older batches,
 *   already committed) is a no-op. A message on the log's subjects that is not a Fluxgate
 *   envelope is terminated and logged, never handed out.
 * - Order per device holds while a group has one reader: reads are serialised per group, a
 *   process that takes a group over re-reads its uncommitted records first (group.ts), and
 *   redelivery after ackWaitMs (a reader stuck that long) is at least once, not in order.
 *   A batch whose append failed part-way and is retried may land after later appends of the
 *   same device (the part that was stored keeps its place); stores are idempotent on message id.
 * - Retention purges only what every group committed (retention.ts); JetStream's own
 *   age/size limits are not set on the stream because they ignore consumers.
 *
 * Spreading a group over nodes (issue 7, not implemented yet): do NOT let several nodes read
 * the same group as it is — taking a group over resets its consumer, and one shared consumer
 * hands a device's records to different nodes out of order. The subjects carry a hash slot of
 * tenant+device (codec.ts, SLOTS = 32), so the plan is one consumer per (group, slot) with
 * filter `fluxgate.msg.<slot>.>`, each slot read by exactly one node at a time (slot ownership
 * through a JetStream KV lease per slot, rebalanced when nodes come and go). Every device maps
 * to one slot, so its records stay in order. Until then run the processing role of a group on
 * one node (`--roles`) and ingest on all of them.
 */
import type { Log } from '../log.js';
import { JetStreamLog, type JetStreamLogOptions } from './jetstream-log.js';

export type { JetStreamLogOptions };
export { SLOTS, encodeToken, slotOf } from './codec.js';

export function createJetStreamLog(opts: JetStreamLogOptions): Log {
  return new JetStreamLog(opts);
}
