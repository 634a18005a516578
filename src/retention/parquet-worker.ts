/**
 * @module The Parquet export worker thread: encodes raw messages into a Parquet file
 * (hyparquet-writer) and fsyncs it, so compressing and encoding a day of messages never holds
 * the node's main thread, where ingest is acknowledged. One file at a time, driven by
 * ./parquet-encoder.ts with requests answered in order: open, rows (one row group or more),
 * finish (footer, then fsync), abort; and keys, which reads back the rows of existing parts.
 */
import { open } from 'node:fs/promises';
import { parentPort } from 'node:worker_threads';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { ParquetWriter, fileWriter } from 'hyparquet-writer';
import type { EncoderRequest, EncoderResponse, ExportRow } from './parquet-encoder.js';

/** Largest Parquet row group; each call's rows (10,000 from ./parquet-export.ts) make one group. */
const ROW_GROUP_ROWS = 50_000;

const SCHEMA = [
  { name: 'root', num_children: 9 },
  { name: 'time', type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'REQUIRED' },
  { name: 'tenant', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'project', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'device', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'topic', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'kind', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
  { name: 'payload', type: 'BYTE_ARRAY', repetition_type: 'REQUIRED' },
  { name: 'receive_time', type: 'INT64', converted_type: 'TIMESTAMP_MILLIS', repetition_type: 'REQUIRED' },
  { name: 'message_id', type: 'BYTE_ARRAY', converted_type: 'UTF8', repetition_type: 'REQUIRED' },
];

function columns(ms: ExportRow[]) {
  return [
    { name: 'time', data: ms.map((m) => BigInt(m.ts)) },
    { name: 'tenant', data: ms.map((m) => m.tenant) },
    { name: 'project', data: ms.map((m) => m.project) },
    { name: 'device', data: ms.map((m) => m.device) },
    { name: 'topic', data: ms.map((m) => m.topic) },
    { name: 'kind', data: ms.map((m) => m.kind) },
    { name: 'payload', data: ms.map((m) => m.payload) },
    { name: 'receive_time', data: ms.map((m) => BigInt(m.receiveTime)) },
    { name: 'message_id', data: ms.map((m) => m.messageId) },
  ];
}

if (!parentPort) throw new Error('the Parquet export worker must run in a worker thread');
const port = parentPort;
let current: { file: string; writer: ParquetWriter } | undefined;

async function handle(req: EncoderRequest): Promise<string[] | undefined> {
  switch (req.op) {
    case 'keys': {
      const keys: string[] = [];
      for (const f of req.files) {
        const rows = await parquetReadObjects({ file: await asyncBufferFromFile(f), columns: ['device', 'message_id'] }) as Array<{ device: string; message_id: string }>;
        for (const r of rows) keys.push(`${r.device}\u0000${r.message_id}`);
      }
      return keys;
    }
    case 'open':
      current = { file: req.file, writer: new ParquetWriter({ writer: fileWriter(req.file), schema: SCHEMA as never, createdBy: 'fluxgate', kvMetadata: req.meta }) };
      return;
    case 'rows':
      if (!current) throw new Error('no file is open');
      await current.writer.write({ columnData: columns(req.rows), rowGroupSize: ROW_GROUP_ROWS });
      return;
    case 'finish': {
      if (!current) throw new Error('no file is open');
      const { file, writer } = current;
      current = undefined;
      await writer.finish();
      const fh = await open(file, 'r');
      try { await fh.sync(); } finally { await fh.close(); }
      return;
    }
    case 'abort':
      current = undefined;
      return;
  }
}

// Requests come one at a time (the encoder waits for each answer), so handlers never overlap.
port.on('message', (req: EncoderRequest) => {
  handle(req).then(
    (keys) => port.postMessage({ id: req.id, ok: true, keys } satisfies EncoderResponse),
    (err: unknown) => port.postMessage({ id: req.id, ok: false, error: (err as Error)?.message ?? String(err) } satisfies EncoderResponse),
  );
});
