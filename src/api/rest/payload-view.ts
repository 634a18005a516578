/** @module How stored payload bytes appear in JSON answers: UTF-8 text when they are text, base64 otherwise. */
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function payloadView(bytes: Uint8Array): { payload: string; encoding: 'utf8' | 'base64' } {
  try {
    return { payload: utf8.decode(bytes), encoding: 'utf8' };
  } catch {
    return { payload: Buffer.from(bytes).toString('base64'), encoding: 'base64' };
  }
}
