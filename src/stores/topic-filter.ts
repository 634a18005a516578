/**
 * @module An MQTT topic filter (`+` one level, `#` this level and everything below, last) as
 * the stores query it in the raw archive: a regular expression both backends evaluate the same
 * way (PostgreSQL `~`, the embedded store through a SQLite function), and the literal prefix
 * before the first wildcard as a LIKE / GLOB pattern with its special characters escaped, so the
 * database discards most rows before the expression runs. Filters are checked by the caller
 * (src/sources/mqtt/topics.ts parseFilter); `$share/…` is not a topic filter here.
 */

const reEscape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The anchored regular expression of a valid filter, e.g. `a/+/c` → `^a/[^/]*\/c$`, `a/#` → `^a(/.*)?$`. */
export function filterRegex(filter: string): string {
  const levels = filter.split('/');
  let re = '';
  levels.forEach((l, i) => {
    const sep = i === 0 ? '' : '/';
    if (l === '#') re = i === 0 ? '.*' : `${re}(/.*)?`;
    else re += sep + (l === '+' ? '[^/]*' : reEscape(l));
  });
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match a topic starting with `$`.
  return `^${/^[+#]/.test(filter) ? '(?!\\$)' : ''}${re}$`;
}

/** The literal part of a filter before its first wildcard (every matching topic starts with it). */
export function literalPrefix(filter: string): string {
  const i = filter.search(/[+#]/);
  const prefix = i < 0 ? filter : filter.slice(0, i);
  // `a/#` also matches `a` itself: the prefix stops before the separator of the wildcard level.
  return i >= 0 && prefix.endsWith('/') && filter[i] === '#' ? prefix.slice(0, -1) : prefix;
}

/** `prefix%` for LIKE … ESCAPE '\', with % _ \ in the prefix taken literally. */
export function likePrefix(filter: string): string {
  return literalPrefix(filter).replace(/[\\%_]/g, '\\$&') + '%';
}

/** `prefix*` for SQLite GLOB, with * ? [ in the prefix taken literally. */
export function globPrefix(filter: string): string {
  return literalPrefix(filter).replace(/[*?[]/g, (c) => `[${c}]`) + '*';
}
