/**
 * Generates docs/configuration.md from the config schema and docs/errors.md from the error
 * registry (`npm run docs`). test/unit/docs.test.ts fails when the committed pages drift.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { settings } from '../src/config/schema.js';
import { ERRORS, type ErrorSpec } from '../src/core/errors.js';

const cell = (s: unknown) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function configurationPage(): string {
  const rows = settings().map((s) => {
    const def = s.schema.default === undefined ? '(unset)' : `\`${JSON.stringify(s.schema.default)}\``;
    return `| \`${s.path.join('.')}\` | \`--${s.flag}\` | \`${s.env}\` | ${def} | ${cell(s.schema.description ?? '')} |`;
  });
  return `# Configuration

Generated from \`src/config/schema.ts\` by \`npm run docs\`; do not edit by hand.

Precedence: defaults < JSON file (\`--config FILE\` / \`FLUXGATE_CONFIG\`) < \`FLUXGATE_*\` environment < flags.
The file uses the same nested names, e.g. \`{ "http": { "port": 8080 }, "log": { "retentionHours": 24 } }\`.
Every problem is reported at start, all at once, naming the setting, its flag and its variable.
Port 0 means any free port; the node prints the ports it bound.

| setting | flag | environment | default | meaning |
|---|---|---|---|---|
${rows.join('\n')}
`;
}

export function errorsPage(): string {
  const rows = Object.entries(ERRORS as Record<string, ErrorSpec>).map(([code, e]) => {
    const mqtt = [e.mqtt5 !== undefined ? `v5 0x${e.mqtt5.toString(16).padStart(2, '0')}` : '', e.mqtt3 !== undefined ? `3.1.1 CONNACK ${e.mqtt3}` : ''].filter(Boolean).join(', ') || '—';
    return `| \`${code}\` | ${e.status} | ${mqtt} | ${e.coap ?? '—'} | ${e.retryable ? 'yes' : 'no'} | ${cell(e.meaning)} | ${cell(e.solve)} |`;
  });
  return `# Errors

Generated from \`src/core/errors.ts\` by \`npm run docs\`; do not edit by hand. Every error answer is
\`{ "code": "…", "message": "…" }\`; the message says what went wrong for this request. Codes are never reused.

| Code | HTTP | MQTT | CoAP | Retry helps | Meaning | How to solve |
|---|---|---|---|---|---|---|
${rows.join('\n')}
`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL('../docs/configuration.md', import.meta.url), configurationPage());
  writeFileSync(new URL('../docs/errors.md', import.meta.url), errorsPage());
  console.log('wrote docs/configuration.md and docs/errors.md');
}
