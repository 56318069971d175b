// Child process for the registry tests: opens a pool by name and either creates many volumes, or starts one
// change and dies (exit 9, no cleanup, registry and lock left as they are) right after the given step.
import { ThinPool } from '../../lib';

async function main() {
  const [poolName, mode, arg, count] = process.argv.slice(2);
  if (mode === 'crash') {
    const [op, step, name, origin] = [arg, count, process.argv[6], process.argv[7]];
    const pool = await ThinPool.open(poolName, { hooks: { step: (s, c) => { if (s === step && c.op === op) process.exit(9); } } });
    if (op === 'create') await pool.createVolume(name, '1M');
    else if (op === 'snapshot') await pool.snapshot(origin, name);
    else await pool.deleteVolume(origin);
    return;
  }
  const pool = await ThinPool.open(poolName);
  await Promise.all(Array.from({ length: Number(count) }, (_, i) => pool.createVolume(`${arg}-${i}-${process.pid}`, '1M')));
  await pool.close();
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
