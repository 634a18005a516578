/**
 * @module Bulk device import, the pure part: reads the rows of a `POST /api/v1/devices/bulk`
 * body (a JSON array of `{ id, project? }`, or CSV with the header `id,project`) and checks
 * every row, collecting each problem as `{ row, field, message }` so the caller can answer with
 * all of them at once. Rows are numbered from 1: the first array element, or the first CSV line
 * after the header. CSV is read by csv-parse (quoting, BOM, CRLF), not by hand.
 */
import { parse } from 'csv-parse/sync';

/** Devices one call may create. */
export const MAX_IMPORT_ROWS = 10_000;

export interface ImportRow { row: number; id: string; project: string }
export interface RowError { row: number; field: string; message: string }

const ID = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const FIELDS = new Set(['id', 'project']);

/** The raw rows of a body: objects from JSON, records from CSV; a body problem is one error of row 0. */
export function rawRows(body: unknown, csv: boolean): { rows: unknown[]; errors: RowError[] } {
  if (csv) {
    if (typeof body !== 'string') return { rows: [], errors: [{ row: 0, field: 'body', message: 'a CSV body is text with the header id,project' }] };
    let records: string[][];
    try {
      records = parse(body, { bom: true, skip_empty_lines: true, trim: true, relax_column_count: false }) as string[][];
    } catch (err) {
      // csv-parse names the line: "Invalid Record Length: expect 2, got 3 on line 5".
      const line = (err as { lines?: number }).lines;
      return { rows: [], errors: [{ row: line !== undefined ? Math.max(0, line - 1) : 0, field: 'csv', message: (err as Error).message }] };
    }
    const [header, ...data] = records;
    if (!header) return { rows: [], errors: [{ row: 0, field: 'csv', message: 'the CSV is empty: send the header id,project and one line per device' }] };
    const cols = header.map((h) => h.toLowerCase());
    const unknown = cols.filter((c) => !FIELDS.has(c));
    if (!cols.includes('id') || unknown.length > 0 || new Set(cols).size !== cols.length) {
      return { rows: [], errors: [{ row: 0, field: 'header', message: `the CSV header must be id,project (project optional), got ${JSON.stringify(header.join(','))}` }] };
    }
    return { rows: data.map((r) => Object.fromEntries(cols.map((c, i) => [c, r[i]]).filter(([, v]) => v !== ''))), errors: [] };
  }
  if (!Array.isArray(body)) return { rows: [], errors: [{ row: 0, field: 'body', message: 'send a JSON array of {"id": …, "project": …} objects, or text/csv with the header id,project' }] };
  return { rows: body, errors: [] };
}

/** Checks every row (shape, id and project syntax, an id given twice); `project` defaults to `default`. */
export function checkRows(rows: unknown[]): { ok: ImportRow[]; errors: RowError[] } {
  const errors: RowError[] = [];
  const ok: ImportRow[] = [];
  const firstRowOf = new Map<string, number>();
  rows.forEach((r, i) => {
    const row = i + 1;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) {
      errors.push({ row, field: '', message: 'not an object: each row is {"id": …, "project": …}' });
      return;
    }
    const o = r as Record<string, unknown>;
    let bad = false;
    for (const k of Object.keys(o)) {
      if (!FIELDS.has(k)) { errors.push({ row, field: k, message: `unknown field ${JSON.stringify(k)}: a row has only id and project` }); bad = true; }
    }
    const id = o.id;
    if (typeof id !== 'string' || id.length === 0) { errors.push({ row, field: 'id', message: 'missing: every row needs a device id' }); bad = true; }
    else if (id.length > 200 || !ID.test(id)) { errors.push({ row, field: 'id', message: `${JSON.stringify(id.slice(0, 60))} is not a device id: 1-200 letters, digits, . _ : - starting with a letter or digit` }); bad = true; }
    else if (firstRowOf.has(id)) { errors.push({ row, field: 'id', message: `device ${id} is also in row ${firstRowOf.get(id)}` }); bad = true; }
    else firstRowOf.set(id, row);
    const project = o.project ?? 'default';
    if (typeof project !== 'string' || project.length === 0 || project.length > 200 || !ID.test(project)) {
      errors.push({ row, field: 'project', message: `${JSON.stringify(project)} is not a project name: 1-200 letters, digits, . _ : -` });
      bad = true;
    }
    if (!bad) ok.push({ row, id: id as string, project: project as string });
  });
  return { ok, errors };
}

const cell = (v: string) => (/[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);

/** CSV text with a header line, for an answer asked with `Accept: text/csv`. */
export function toCsv(header: string[], rows: string[][]): string {
  return [header, ...rows].map((r) => r.map(cell).join(',')).join('\n') + '\n';
}
