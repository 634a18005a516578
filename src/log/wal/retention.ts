/**
 * @module WAL retention: which sealed segments may go. A segment is deleted, oldest first, only
 * when every record in it is committed by every consumer group AND it is older than
 * retentionHours or the log is larger than retentionBytes. The active segment is never
 * deleted (a quiet log seals it first when it would be eligible). With no consumer group at
 * all nothing counts as committed, so nothing is deleted. 0 disables a limit.
 */
import type { SegmentInfo } from './segment.js';

export interface RetentionLimits {
  retentionHours: number;
  retentionBytes: number;
}

const HOUR_MS = 3600 * 1000;

/**
 * How many segments from the front of `segments` to delete. `committedBelow`: the lowest
 * committed position over all groups (every sequence below it is processed by everyone);
 * `logEnd`: the sequence after the last durable record.
 */
export function segmentsToDelete(
  segments: readonly SegmentInfo[], committedBelow: number | undefined, logEnd: number, now: number, limits: RetentionLimits,
): number {
  if (committedBelow === undefined) return 0;
  let total = 0;
  for (const s of segments) total += s.size;
  let n = 0;
  // The last segment is the active one; it is never deleted here.
  for (; n < segments.length - 1; n++) {
    const seg = segments[n]!;
    const end = segments[n + 1]!.base;
    if (end > committedBelow || end > logEnd) break;
    const tooOld = limits.retentionHours > 0 && now - seg.mtimeMs > limits.retentionHours * HOUR_MS;
    const tooBig = limits.retentionBytes > 0 && total > limits.retentionBytes;
    if (!tooOld && !tooBig) break;
    total -= seg.size;
  }
  return n;
}

/**
 * Whether the active segment should be sealed so that retention can remove it: it holds
 * records, all of them are committed by every group, and it is past a limit on its own
 * (older than retentionHours, or alone larger than retentionBytes; otherwise deleting sealed
 * segments is enough and the active one keeps filling).
 */
export function shouldSealActive(active: SegmentInfo, committedBelow: number | undefined, logEnd: number, now: number, limits: RetentionLimits): boolean {
  if (committedBelow === undefined || active.size === 0 || committedBelow < logEnd) return false;
  const tooOld = limits.retentionHours > 0 && now - active.mtimeMs > limits.retentionHours * HOUR_MS;
  const tooBig = limits.retentionBytes > 0 && active.size > limits.retentionBytes;
  return tooOld || tooBig;
}
