// Child process for registry-processes.test.ts. 'write': `count` changes, each under the pool lock, checking
// that the registry holds the last one committed (a truth file written under the same lock says which);
// prints the number of lost commits. 'open': opens and closes the registry `count` times.
import fs from 'node:fs';
import path from 'node:path';
import { LmdbRegistry } from '../../lib';
import { PoolLock } from '../../lib/thin/lock';
import { runAsync } from '../../lib/core/steps';

const [mode, dir, count] = process.argv.slice(2);
const n = Number(count);

async function write(): Promise<number> {
  const reg = LmdbRegistry.open(dir);
  const lock = new PoolLock(path.join(dir, 'lock'));
  const truth = path.join(dir, 'truth');
  let lost = 0;
  for (let i = 0; i < n; i++) {
    await runAsync(function* () {
      yield lock.op(function* () {
        const c = Number(fs.readFileSync(truth, 'utf8'));
        if ((reg.pending()?.toTid ?? 0) !== c) lost++;
        const r = reg.intend({ op: 'create', name: `v${i}`, size: 512 as never, parent: null, fromTid: c, toTid: c + 1 }, reg.pending(),
          (id) => ({ put: [{ name: `v${i}`, id, size: 512 as never, parent: null, state: 'ready', created: 0 }] }));
        if (!('recorded' in r)) lost++;
        fs.writeFileSync(truth, String(c + 1));
      }, 'registry');
    }());
  }
  reg.close();
  return lost;
}

if (mode === 'write') {
  write().then((lost) => { process.stdout.write(String(lost)); process.exit(0); }, (e) => { console.error(e); process.exit(1); });
} else {
  for (let i = 0; i < n; i++) LmdbRegistry.open(dir).close();
}
