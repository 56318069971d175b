// Processes that open a registry while another commits to it must not undo its commits. LMDB as lmdb-js
// carries it set the shared transaction id back to the meta page it had read at every open, and the writer's
// next transaction began from the older page: a commit was lost (two processes creating volumes on one pool
// saw an unfinished change the pool had already moved past). Upstream LMDB (deps/lmdb) sets it at open only
// when no other process has the file open (deps/lmdb/README.md).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LmdbRegistry } from '../../lib';
import { bound, childNode, fuzzRuns } from './emulation';

jest.setTimeout(bound(120_000));

const child = (args: string[]) => new Promise<string>((resolve, reject) => {
  const p = spawn(...childNode([path.join(__dirname, 'registry-process.js'), ...args]), { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${args[0]} exited ${code}`))));
});

test('no commit is lost while other processes open the registry', async () => {
  // Rounds of a race, and its writes and opens: fewer under emulation.
  const writes = fuzzRuns(1500);
  for (let round = 0; round < fuzzRuns(4); round++) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-reg-'));
    try {
      fs.writeFileSync(path.join(dir, 'truth'), '0');
      // Held open here throughout, as a long-running process holds its pool's: the others join it.
      const r = LmdbRegistry.open(dir);
      try {
        const [lost] = await Promise.all([child(['write', dir, String(writes)]), ...[1, 2, 3, 4].map(() => child(['open', dir, String(writes)]))]);
        expect(Number(lost)).toBe(0);
        expect(r.count()).toBe(writes);
      } finally {
        r.close();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});
