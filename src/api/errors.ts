/**
 * @module The one place where errors become HTTP answers: `{ code, message }` with the
 * registry's status. Fastify's own failures (bad JSON, body too large, wrong content type,
 * schema validation) are translated to registry codes with a message that names the field
 * or the setting.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { FluxgateError, isFluxgateError, type ErrorCode } from '../core/errors.js';

/** `errors`: every problem of a request that has several, e.g. the rows of a bulk import ({ row, field, message }). */
export interface ErrorBody { code: ErrorCode; message: string; errors?: unknown[] }

export function toFluxgateError(err: FastifyError | Error, bodyLimit: number): FluxgateError {
  if (isFluxgateError(err)) return err;
  const fe = err as FastifyError;
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new FluxgateError('PAYLOAD_TOO_LARGE', `request body is larger than ${bodyLimit} bytes (setting http.bodyLimitBytes, FLUXGATE_HTTP_BODY_LIMIT_BYTES): send smaller batches`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new FluxgateError('UNSUPPORTED_MEDIA_TYPE', `content type ${JSON.stringify(fe.message.replace(/^Unsupported Media Type: ?/, ''))} is not accepted: send Content-Type: application/json`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new FluxgateError('BAD_JSON', 'the body is empty: send a JSON object or an array of objects');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new FluxgateError('BAD_REQUEST', 'Content-Length does not match the body');
  }
  if (fe.validation) {
    const v = fe.validation[0];
    const where = fe.validationContext ?? 'request';
    const field = v?.instancePath ? v.instancePath.replace(/^\//, '').replace(/\//g, '.') : (v?.params as { missingProperty?: string } | undefined)?.missingProperty;
    return new FluxgateError('BAD_REQUEST', `${where}${field ? ` field "${field}"` : ''}: ${v?.message ?? fe.message}`);
  }
  if (fe instanceof SyntaxError || fe.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || (fe.statusCode === 400 && /JSON/.test(fe.message))) {
    return new FluxgateError('BAD_JSON', `the body is not valid JSON: ${fe.message}`);
  }
  if (fe.statusCode === 404) return new FluxgateError('NOT_FOUND', fe.message);
  if (fe.statusCode === 415) return new FluxgateError('UNSUPPORTED_MEDIA_TYPE', `${fe.message}: send Content-Type: application/json`);
  if (fe.statusCode === 413) return new FluxgateError('PAYLOAD_TOO_LARGE', `${fe.message} (limit http.bodyLimitBytes = ${bodyLimit} bytes)`);
  if (fe.statusCode && fe.statusCode >= 400 && fe.statusCode < 500) return new FluxgateError('BAD_REQUEST', fe.message);
  return new FluxgateError('INTERNAL', `internal error: ${err.message}`, { cause: err });
}

export function errorHandler(bodyLimit: number) {
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const fx = toFluxgateError(err, bodyLimit);
    if (fx.status >= 500 && fx.code !== 'LOG_OVERLOADED' && fx.code !== 'SHUTTING_DOWN') req.log.error({ err }, fx.message);
    if (fx.spec.retryable) reply.header('Retry-After', String((fx.details?.retryAfterSeconds as number | undefined) ?? 1));
    const list = fx.details?.errors;
    void reply.status(fx.status).send({ code: fx.code, message: fx.message, ...(Array.isArray(list) ? { errors: list } : {}) } satisfies ErrorBody);
  };
}
