// Child process for the registry tests: opens a pool by name and either creates many volumes, or dies
// (exit 9, no cleanup) right after a create's pool message.
import { ThinPool } from '../../lib';

async function main() {
  const [poolName, mode, arg, count] = process.argv.slice(2);
  if (mode === 'crash-after-message') {
    const pool = await ThinPool.open(poolName, { hooks: { step: (s) => { if (s === 'message') process.exit(9); } } });
    await pool.createVolume(arg, '1M');
    return;
  }
  const pool = await ThinPool.open(poolName);
  await Promise.all(Array.from({ length: Number(count) }, (_, i) => pool.createVolume(`${arg}-${i}-${process.pid}`, '1M')));
  await pool.close();
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
