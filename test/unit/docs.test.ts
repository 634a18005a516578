import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { configurationPage, errorsPage } from '../../scripts/gen-docs.js';

const committed = (name: string) => readFileSync(new URL(`../../docs/${name}`, import.meta.url), 'utf8');

test('docs - configuration.md matches the config schema (run `npm run docs` after changing it)', () => {
  assert.equal(committed('configuration.md'), configurationPage());
});

test('docs - errors.md matches the error registry (run `npm run docs` after changing it)', () => {
  assert.equal(committed('errors.md'), errorsPage());
});
