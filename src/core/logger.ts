/** @module Structured logging (pino): JSON lines on stderr, one child logger per component. */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { pid: process.pid } }, destination as pino.DestinationStream);
}
