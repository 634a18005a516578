/**
 * @module Creates or updates the log's stream, idempotently: several nodes starting at once
 * all converge on the same configuration (an add that loses the race becomes an update).
 * Only the fields Fluxgate owns are set; anything an operator changed by hand (placement,
 * compression, a hard max_bytes cap) is kept on update.
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';

export interface StreamSettings {
  name: string;
  subjectPrefix: string;
  replicas: number;
  duplicateWindowMs: number;
}

function owned(s: StreamSettings): Partial<StreamConfig> {
  return {
    subjects: [`${s.subjectPrefix}.>`],
    // Limits retention with no age or size limit of its own: JetStream's limits would drop
    // records no group has committed. enforceRetention() purges below every group's ack floor.
    retention: RetentionPolicy.Limits,
    storage: StorageType.File,
    discard: DiscardPolicy.Old,
    num_replicas: s.replicas,
    duplicate_window: nanos(s.duplicateWindowMs),
  };
}

function differs(have: StreamConfig, want: Partial<StreamConfig>): boolean {
  return JSON.stringify(have.subjects) !== JSON.stringify(want.subjects)
    || have.num_replicas !== want.num_replicas
    || have.duplicate_window !== want.duplicate_window
    || have.retention !== want.retention;
}

/** Ensures the stream exists with Fluxgate's settings; returns whether it was created. */
export async function ensureStream(jsm: JetStreamManager, s: StreamSettings): Promise<'created' | 'updated' | 'unchanged'> {
  const want = owned(s);
  for (let attempt = 0; ; attempt++) {
    const have = await jsm.streams.info(s.name).catch((err: unknown) => {
      if (isNotFound(err)) return undefined;
      throw err;
    });
    if (have) {
      if (!differs(have.config, want)) return 'unchanged';
      await jsm.streams.update(s.name, { ...have.config, ...want });
      return 'updated';
    }
    try {
      await jsm.streams.add({ name: s.name, ...want });
      return 'created';
    } catch (err) {
      // Another node created it between our info and add: read it again and update if needed.
      if (attempt < 3 && /already in use|exists/i.test((err as Error).message)) continue;
      throw err;
    }
  }
}

export function isNotFound(err: unknown): boolean {
  const e = err as { code?: unknown; api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10059 || e?.api_error?.err_code === 10014 || /not found/i.test(String(e?.message));
}
