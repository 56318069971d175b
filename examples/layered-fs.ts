// The layered-images walkthrough with a filesystem: the base volume gets ext4 (mkfs.ext4), each layer is a
// snapshot taken while the layer below is mounted (the snapshot's suspend freezes the filesystem, so the copy
// is clean), mounted beside it, and given its own files. mkfs, mount and umount are the system's tools: the
// library itself never runs a subprocess. Run as root (or `npm run demo:fs`, which uses the test VM when needed).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ThinPool, ThinVolume } from '../lib';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-fs-demo-'));
const mounted: string[] = [];

function mount(v: ThinVolume): string {
  const at = path.join(dir, v.name);
  fs.mkdirSync(at);
  execFileSync('mount', ['-t', 'ext4', v.path, at]);
  mounted.push(at);
  return at;
}

async function main() {
  for (const tool of ['mkfs.ext4', 'mount', 'umount']) {
    try { execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }); } catch { throw new Error(`${tool} is missing: apt-get install e2fsprogs mount`); }
  }
  const pool = await ThinPool.create({ name: 'fsdemo-pool', dataFile: path.join(dir, 'data'), dataSize: '10G' });
  try {
    const base = await (await pool.createVolume('fsdemo-base', '1G')).activate();
    execFileSync('mkfs.ext4', ['-q', '-F', base.path]);
    const baseDir = mount(base);
    fs.writeFileSync(path.join(baseDir, 'hello.txt'), 'hello world, I am a base\n');
    console.log(`${base.path}: ext4, mounted on ${baseDir}, wrote hello.txt`);

    const snap1 = await (await pool.snapshot(base, 'fsdemo-snap1')).activate();  // base stays mounted
    const snap1Dir = mount(snap1);
    fs.writeFileSync(path.join(snap1Dir, 'hello.txt'), 'I am snap1\n');
    fs.writeFileSync(path.join(snap1Dir, 'app.conf'), 'layer=1\n');
    console.log(`${snap1.path}: snapshot of the mounted base, mounted on ${snap1Dir}, rewrote hello.txt, added app.conf`);

    const snap2 = await (await pool.snapshot(snap1, 'fsdemo-snap2')).activate();
    const snap2Dir = mount(snap2);
    fs.rmSync(path.join(snap2Dir, 'app.conf'));
    console.log(`${snap2.path}: snapshot of snap1, mounted on ${snap2Dir}, removed app.conf`);

    console.log('\nfiles in each layer:');
    for (const [v, at] of [[base, baseDir], [snap1, snap1Dir], [snap2, snap2Dir]] as const) {
      const files = fs.readdirSync(at).filter((f) => f !== 'lost+found').sort();
      console.log(`  ${v.name.padEnd(13)} ${files.map((f) => `${f}: ${JSON.stringify(fs.readFileSync(path.join(at, f), 'utf8').trim())}`).join(', ')}`);
    }
    for (const at of mounted.splice(0).reverse()) execFileSync('umount', [at]);

    const usage = new Map<string, string>();
    for (const v of [base, snap1, snap2]) usage.set(v.name, `${((await v.usage()).mappedBytes / 2 ** 20).toFixed(1)} MiB mapped`);
    console.log('\nlayers:');
    console.log(await pool.tree((v) => `  ${v.name} (thin id ${v.id}): ${usage.get(v.name)}`));
  } finally {
    for (const at of mounted.reverse()) { try { execFileSync('umount', [at]); } catch { /* keep the first error */ } }
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
    console.log('\ncleaned up: unmounted, volumes deactivated, pool removed, loops detached, files deleted');
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
