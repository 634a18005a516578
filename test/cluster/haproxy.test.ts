/**
 * @module The HAProxy config generated from deploy/haproxy.cfg (src/cluster/haproxy.ts): one
 * server line per node in each backend with the health check on the node's HTTP port, binds on
 * the given ports, and HAProxy itself accepts it (`haproxy -c`) when installed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { haproxyConfig } from '../../src/cluster/haproxy.js';
import { HAPROXY_BIN } from './harness.js';
import { tempDir } from '../helpers/wait.js';

const nodes = [1, 2, 3, 4].map((i) => ({ name: `node-${i}`, host: '127.0.0.1', httpPort: 20_000 + i, mqttPort: 21_000 + i }));
const cfg = haproxyConfig({ mqttPort: 11_883, httpPort: 18_080, statsPort: 18_404, nodes });

test('haproxy config: every node in both backends, health check on its HTTP port, binds on the given ports', () => {
  const section = (name: string) => cfg.split(/\n(?=\S)/).find((s) => s.startsWith(name))!;
  const mqtt = section('backend fluxgate_mqtt');
  const http = section('backend fluxgate_http');
  for (const n of nodes) {
    assert.match(mqtt, new RegExp(`server ${n.name} 127\\.0\\.0\\.1:${n.mqttPort} check port ${n.httpPort}\\b`));
    assert.match(http, new RegExp(`server ${n.name} 127\\.0\\.0\\.1:${n.httpPort} check\\b`));
  }
  assert.equal((cfg.match(/^\s*server /gm) ?? []).length, 8, 'the template\'s example servers are gone');
  assert.match(mqtt, /option httpchk GET \/readyz/);
  assert.match(http, /option httpchk GET \/readyz/);
  assert.match(section('frontend mqtt'), /bind 127\.0\.0\.1:11883/);
  assert.match(section('frontend http'), /bind 127\.0\.0\.1:18080/);
  assert.match(section('listen stats'), /bind 127\.0\.0\.1:18404/);
  assert.doesNotMatch(cfg, /^\s*log /m);
});

test('haproxy config: haproxy -c accepts the generated file', { skip: HAPROXY_BIN ? false : 'haproxy is not installed (apt-get install haproxy)' }, async () => {
  const tmp = await tempDir('fluxgate-haproxy-');
  try {
    const file = join(tmp.dir, 'haproxy.cfg');
    await writeFile(file, cfg);
    execFileSync(HAPROXY_BIN!, ['-c', '-f', file], { stdio: 'pipe' });
  } finally {
    await tmp.cleanup();
  }
});
