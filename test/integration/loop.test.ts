// Loop devices against the real kernel.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Block, DeviceMapper, Loop, sectors } from '../../lib';
import { scratchDir, uniqueName } from './helpers';

test('attach, status, find, list, set capacity, detach', async () => {
  const dir = scratchDir();
  const file = path.join(dir, 'a.img');
  fs.writeFileSync(file, Buffer.alloc(1 << 20));
  const loop = await Loop.attach(file, { offset: 4096, sizeLimit: 512 * 1024, readOnly: true, blockSize: 4096 });
  try {
    const s = await Loop.status(loop.path);
    expect(s).toMatchObject({ path: loop.path, number: loop.number, backingFile: file, offset: 4096, sizeLimit: 512 * 1024, readOnly: true, autoclear: false });
    expect(s.backingInode).toBe(fs.statSync(file).ino);
    expect(await Loop.find(file)).toEqual([loop.path]);
    expect(Loop.findSync(file)).toEqual([loop.path]);
    expect(Loop.list()).toContainEqual({ path: loop.path, number: loop.number, backingFile: file });
    await Loop.setCapacity(loop.path);
  } finally {
    await Loop.detach(loop.path);
  }
  expect(Loop.findSync(file)).toEqual([]);
  await expect(Loop.detach(loop.path)).rejects.toMatchObject({ code: 'ENXIO', command: 'LOOP_CLR_FD' });
  fs.rmSync(dir, { recursive: true });
});

test('the pre-5.8 sequence (SET_FD + SET_STATUS64) binds with the same options', async () => {
  const dir = scratchDir();
  const file = path.join(dir, 'legacy.img');
  fs.writeFileSync(file, Buffer.alloc(1 << 20));
  const o = { offset: 8192, sizeLimit: 256 * 1024, readOnly: true, blockSize: 4096 } as const;
  const plain = Loop.attachSync(file);  // this kernel has LOOP_CONFIGURE: the default uses it
  expect(plain.method).toBe('configure');
  Loop.detachSync(plain.path);
  const loop = await Loop.attach(file, { ...o, method: 'set-fd' });
  const sync = Loop.attachSync(file, { ...o, method: 'set-fd', autoclear: true });
  try {
    expect([loop.method, sync.method]).toEqual(['set-fd', 'set-fd']);
    for (const l of [loop, sync]) {
      expect(await Loop.status(l.path)).toMatchObject({ backingFile: file, offset: 8192, sizeLimit: 256 * 1024, readOnly: true, autoclear: l === sync });
      expect(Block.sizeSync(l.path)).toBe(256 * 1024);
      expect(fs.readFileSync(`/sys/block/loop${l.number}/queue/logical_block_size`, 'utf8').trim()).toBe('4096');
    }
    sync.release();  // autoclear, and nothing else holds it: it detaches
    expect(Loop.findSync(file)).toEqual([loop.path]);
  } finally {
    sync.release();
    await Loop.detach(loop.path);
    fs.rmSync(dir, { recursive: true });
  }
});

test('a grown backing file shows after set capacity', () => {
  const dir = scratchDir();
  const file = path.join(dir, 'g.img');
  fs.writeFileSync(file, Buffer.alloc(1 << 20));
  const loop = Loop.attachSync(file);
  try {
    const { Block } = require('../../lib');
    expect(Block.sizeSync(loop.path)).toBe(1 << 20);
    fs.truncateSync(file, 4 << 20);
    Loop.setCapacitySync(loop.path);
    expect(Block.sizeSync(loop.path)).toBe(4 << 20);
  } finally {
    Loop.detachSync(loop.path);
    fs.rmSync(dir, { recursive: true });
  }
});

test('autoclear: the loop stays while a dm table holds it and goes when the last user does', async () => {
  const dm = new DeviceMapper();
  const dir = scratchDir();
  const file = path.join(dir, 'ac.img');
  fs.writeFileSync(file, Buffer.alloc(1 << 20));
  const name = uniqueName('ac');
  const loop = await Loop.attach(file, { autoclear: true });
  try {
    await dm.createDevice(name, [{ start: sectors(0), length: sectors(2048), type: 'linear', params: `7:${loop.number} 0` }]);
    loop.release();  // now only the table holds it
    expect((await Loop.status(loop.path)).autoclear).toBe(true);
    expect(await Loop.find(file)).toEqual([loop.path]);
    await dm.remove(name);
    expect(await Loop.find(file)).toEqual([]);
  } finally {
    loop.release();
    dm.close();
    fs.rmSync(dir, { recursive: true });
  }
});

test('two concurrent attachers x 100 never share a loop device', async () => {
  const dir = scratchDir();
  const worker = path.join(__dirname, 'loop-attacher.js');
  const children: ReturnType<typeof fork>[] = [];
  const run = (tag: string) => new Promise<{ file: string; path: string }[]>((resolve, reject) => {
    const child = fork(worker, [dir, tag, '100'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(child);
    child.once('message', (m) => resolve(m as { file: string; path: string }[]));
    child.once('error', reject);
    child.once('exit', (code) => { if (code) reject(new Error(`attacher ${tag} exited ${code}`)); });
  });
  let a: { file: string; path: string }[] = [];
  let b: typeof a = [];
  try {
    [a, b] = await Promise.all([run('a'), run('b')]);
    const all = [...a, ...b];
    expect(all).toHaveLength(200);
    expect(new Set(all.map((x) => x.path)).size).toBe(200);
    for (const x of all) expect((await Loop.status(x.path)).backingFile).toBe(x.file);
  } finally {
    for (const c of children) c.kill('SIGKILL');
    for (const l of Loop.list()) if (l.backingFile.startsWith(dir)) await Loop.detach(l.path).catch(() => undefined);
    fs.rmSync(dir, { recursive: true });
  }
});
