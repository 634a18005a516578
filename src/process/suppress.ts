/**
 * @module Same-value suppression (per project, `suppressSameValueSeconds`): a point whose value
 * equals its key's last stored value, less than N seconds later by device time, is not stored as
 * history. The first point of a key, a changed value, a point N seconds or more after the last
 * stored one, and a point older than the last stored one (late data fills history as it is) are
 * stored. The raw message is archived either way and refreshes the device's last seen.
 *
 * "Last stored" lives in memory, bounded (oldest keys forgotten first): after a restart, or for
 * a forgotten key, the next point is stored, which costs one extra history row and never loses a
 * change. Decisions are taken on a per-batch overlay and committed only once the batch is stored,
 * so a failed or split write never counts a point as stored that was not.
 */
import type { TelemetryPoint, Value } from '../stores/store.js';

interface Last { value: Value; ts: number }

const seriesKey = (p: TelemetryPoint): string => `${p.tenant}\u0000${p.device}\u0000${p.key}`;

export class SameValueFilter {
  private readonly last = new Map<string, Last>();

  constructor(private readonly maxKeys = 1_000_000) {}

  /** Keys remembered (at most maxKeys). */
  get size(): number {
    return this.last.size;
  }

  /** A decision pass over one batch; `commit()` it once the batch is stored. */
  begin(): SuppressionPass {
    return new SuppressionPass(this);
  }

  /** @internal */
  lookup(k: string): Last | undefined {
    return this.last.get(k);
  }

  /** @internal */
  commit(overlay: Map<string, Last>): void {
    for (const [k, v] of overlay) {
      this.last.delete(k); // re-inserted last: the map's order is "least recently stored first"
      this.last.set(k, v);
    }
    if (this.last.size > this.maxKeys) {
      let extra = this.last.size - this.maxKeys;
      for (const k of this.last.keys()) {
        if (extra-- <= 0) break;
        this.last.delete(k);
      }
    }
  }
}

export class SuppressionPass {
  private readonly overlay = new Map<string, Last>();

  constructor(private readonly filter: SameValueFilter) {}

  /** True when `p` repeats its key's last stored value within `windowMs`; otherwise it counts as stored. */
  suppress(p: TelemetryPoint, windowMs: number): boolean {
    const k = seriesKey(p);
    const prev = this.overlay.get(k) ?? this.filter.lookup(k);
    if (windowMs > 0 && prev && prev.value === p.value && p.ts >= prev.ts && p.ts - prev.ts < windowMs) return true;
    if (!prev || p.ts >= prev.ts) this.overlay.set(k, { value: p.value, ts: p.ts });
    return false;
  }

  commit(): void {
    if (this.overlay.size) this.filter.commit(this.overlay);
  }
}
