#!/usr/bin/env node
// Runs the TypeScript CLI through tsx's loader, so `npm start` needs no build step
// and the sources users read are the code that runs.
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
