// Child process for the lease tests: opens a pool by name, creates the volumes it is told to with a lease on
// itself ({ lease: { pid: process.pid } }), activates those asked, says 'ready' over IPC and runs until killed.
//   argv: <pool> <json: { create?: string[], activate?: string[], snapshots?: [origin, name][] }>
import { ThinPool } from '../../lib';

async function main() {
  const [poolName, json] = process.argv.slice(2);
  const plan = JSON.parse(json) as { create?: string[]; activate?: string[]; snapshots?: [string, string][] };
  const pool = await ThinPool.open(poolName);
  const lease = { pid: process.pid };
  for (const name of plan.create ?? []) await pool.createVolume(name, '4M', { lease });
  for (const [origin, name] of plan.snapshots ?? []) await pool.snapshot(origin, name, { lease });
  for (const name of plan.activate ?? []) await pool.volume(name)!.activate();
  process.send!('ready');
  setInterval(() => undefined, 1 << 30);  // the owner lives until it is killed
}
main().catch((e) => { console.error(e); process.exit(1); });
