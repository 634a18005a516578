/**
 * Crash bench: N rounds (default 100) of HTTP load + SIGKILL + restart on one data dir;
 * prints acknowledged, lost and duplicated per round and in total.
 * Usage: node --import tsx bench/crash-http.ts [rounds]
 */
import { crashRound } from '../test/helpers/crash-http.js';
import { tempDir } from '../test/helpers/wait.js';

const rounds = Number(process.argv[2] ?? 100);
const { dir, cleanup } = await tempDir('fluxgate-crash-bench-');
let acked = 0, lost = 0, duplicated = 0;
try {
  for (let round = 1; round <= rounds; round++) {
    const r = await crashRound({ dataDir: dir, round });
    acked += r.acked; lost += r.lost; duplicated += r.duplicated;
    console.log(`round ${round}: acked ${r.acked} lost ${r.lost} duplicated ${r.duplicated} stored-unacked ${r.storedUnacked}`);
  }
} finally {
  await cleanup();
}
console.log(`TOTAL rounds ${rounds} acked ${acked} lost ${lost} duplicated ${duplicated}`);
process.exit(lost || duplicated ? 1 : 0);
