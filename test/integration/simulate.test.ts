import { it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestNode, ADMIN_KEY } from '../helpers/node.js';
import { simulate, simulateOptions } from '../../src/simulate/simulate.js';
import { waitFor } from '../helpers/wait.js';

it('simulate - provisions devices and sends readings over HTTP and MQTT that are stored', async () => {
  const t = await startTestNode();
  try {
    const mqttPort = t.node.addresses.find((a) => a.name === 'mqtt')!.port;
    const lines: string[] = [];
    for (const protocol of ['http', 'mqtt']) {
      const o = simulateOptions({ devices: '3', duration: '1s', rate: '5', protocol, 'mqtt-port': String(mqttPort) }, t.url, ADMIN_KEY);
      const tally = await simulate(o, (l) => lines.push(l));
      assert.ok(tally.acked >= 3, `${protocol}: ${tally.acked} acknowledged`);
      assert.equal(tally.refused + tally.failed, 0, protocol);
    }
    assert.match(lines.join('\n'), /acknowledged \d+/);
    const latest = await waitFor(async () => (await t.api('GET', '/api/v1/devices/sim-2/latest')).body.latest?.temperature, { what: 'sim-2 temperature' });
    assert.equal(typeof latest.value, 'number');
    assert.throws(() => simulateOptions({ protocol: 'carrier-pigeon' }, t.url, ADMIN_KEY), /--protocol/);
  } finally {
    await t.stop();
  }
});
