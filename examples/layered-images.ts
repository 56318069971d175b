// The classic walkthrough, as Docker's devicemapper storage did it, in-process:
// a pool on a 10 GiB sparse data file, a 1 GiB base volume, a snapshot, a snapshot of the snapshot, each
// written through its block device, read back to show copy-on-write isolation, then the layer tree.
// Run as root on a kernel with device-mapper (or `npm run demo`, which uses the test VM when needed).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ThinPool } from '../lib';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-demo-'));

function write(device: string, text: string): void {
  const fd = fs.openSync(device, 'r+');
  const block = Buffer.alloc(4096);
  block.write(text);
  fs.writeSync(fd, block, 0, block.length, 0);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}

function read(device: string): string {
  const fd = fs.openSync(device, 'r');
  const block = Buffer.alloc(64);
  fs.readSync(fd, block, 0, block.length, 0);
  fs.closeSync(fd);
  return block.toString().replace(/\0+$/, '');
}

async function main() {
  const pool = await ThinPool.create({ name: 'demo-pool', dataFile: path.join(dir, 'data'), dataSize: '10G' });
  try {
    console.log(`pool ${pool.name} on ${pool.files.data} (10 GiB sparse) + ${pool.files.metadata}`);
    const base = await (await pool.createVolume('demo-base', '1G')).activate();
    write(base.path, 'hello world, I am a base');
    console.log(`${base.path}: create_thin ${base.id}, wrote the base layer`);

    const snap1 = await (await pool.snapshot(base, 'demo-snap1')).activate();
    write(snap1.path, 'I am snap1');
    console.log(`${snap1.path}: create_snap ${snap1.id} ${base.id}, wrote snap1`);

    const snap2 = await (await pool.snapshot(snap1, 'demo-snap2')).activate();
    console.log(`${snap2.path}: create_snap ${snap2.id} ${snap1.id}`);

    console.log('\nread back:');
    for (const v of [base, snap1, snap2]) console.log(`  ${v.name.padEnd(11)} ${JSON.stringify(read(v.path))}`);

    const usage = new Map<string, string>();
    for (const v of [base, snap1, snap2]) {
      const u = await v.usage();
      usage.set(v.name, `${(u.mappedBytes / 1024).toFixed(0)} KiB mapped of ${(v.size / 2048).toFixed(0)} MiB`);
    }
    console.log('\nlayers:');
    console.log(await pool.tree((v) => `  ${v.name} (thin id ${v.id}): ${usage.get(v.name)}`));
    const s = await pool.status();
    if (s.state === 'ok') console.log(`\npool: transaction ${s.transactionId}, data ${s.data.used}/${s.data.total} blocks, metadata ${s.metadata.used}/${s.metadata.total} blocks, ${s.mode}`);
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
    console.log('\ncleaned up: volumes deactivated, pool removed, loops detached, files deleted');
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
