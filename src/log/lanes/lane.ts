/**
 * @module Which lane a message travels in, and how a lane log's offsets carry their lane.
 *
 * Two lanes: `events` (the priority lane) holds every kind that must never be shed — events,
 * telemetry and attributes — and `snapshots` holds snapshots, the only kind admission may
 * shed (src/sources/admission.ts). Telemetry and attributes ride with events because they
 * are changes too: losing or delaying one behind a backlog of periodic full snapshots would
 * make latest state older than the device's last report.
 *
 * A composite offset is `laneIndex << 56 | inner offset` (WAL sequences and JetStream stream
 * sequences stay far below 2^56), so offsets stay ordered within one read (events before
 * snapshots) and commit can split a batch back into its lanes without a lookup.
 */
import type { MessageKind } from '../../core/envelope.js';

export type Lane = 'events' | 'snapshots';
/** In priority order: a read prefers the first lane and keeps log.snapshotShare of it for the second (lane-log.ts). */
export const LANES: readonly Lane[] = ['events', 'snapshots'];

const LANE_SHIFT = 56n;
const INNER_MASK = (1n << LANE_SHIFT) - 1n;

export function laneOfKind(kind: MessageKind): Lane {
  return kind === 'snapshot' ? 'snapshots' : 'events';
}

export function laneIndexOf(lane: Lane): number {
  return lane === 'events' ? 0 : 1;
}

/** The composite offset of an inner offset of lane `index`. */
export function tagOffset(index: number, inner: bigint): bigint {
  if (inner < 0n || inner > INNER_MASK) throw new RangeError(`log offset ${inner} does not fit a lane offset (56 bits)`);
  return (BigInt(index) << LANE_SHIFT) | inner;
}

/** Splits a composite offset into its lane index and the inner log's offset. */
export function untagOffset(offset: bigint): { index: number; inner: bigint } {
  return { index: Number(offset >> LANE_SHIFT), inner: offset & INNER_MASK };
}
