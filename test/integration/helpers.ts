// Shared fixtures for integration tests: unique names, loop-backed scratch devices, dmsetup as an oracle.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DeviceMapper, Loop, LoopDevice, Target } from '../../lib';

let counter = 0;
export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid}-${++counter}`;
}

export function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'devmapper-test-'));
}

/** A sparse file of `bytes` attached to a loop device (no autoclear); detach() undoes both. */
export function scratchLoop(bytes: number): LoopDevice & { file: string; detach(): void } {
  const dir = scratchDir();
  const file = path.join(dir, 'backing.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, bytes);
  const loop = Loop.attachSync(file);
  return Object.assign(loop, {
    file,
    detach() {
      Loop.detachSync(loop.path);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  });
}

/** dmsetup, the independent oracle; never used by the library. */
export function dmsetup(...args: string[]): string {
  return execFileSync('dmsetup', args, { encoding: 'utf8', env: { ...process.env, DM_DISABLE_UDEV: '1' } });
}

export function hasDmsetup(): boolean {
  try { dmsetup('version'); return true; } catch { return false; }
}

/** Loads a table, swaps it live (suspend + resume) and returns the table the kernel reports back. */
export async function swapTable(dm: DeviceMapper, name: string, table: Target[]): Promise<Target[]> {
  await dm.load(name, table);
  await dm.suspend(name);
  await dm.resume(name);
  return dm.table(name);
}

/** Polls until check() is true (bounded); for work the kernel finishes asynchronously. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** Removes the named devices that still exist, in order; for finally blocks. */
export function removeQuietly(dm: DeviceMapper, ...names: string[]): void {
  for (const n of names) {
    try { dm.removeSync(n); } catch (e) { if ((e as { code?: string }).code !== 'ENXIO') throw e; }
  }
}

export function zeroMetadata(device: string): void {
  const fd = fs.openSync(device, 'r+');
  try { fs.writeSync(fd, Buffer.alloc(4096), 0, 4096, 0); fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}

/** A metadata file and a data file (sparse) on loop devices, for pools made with dmsetup; remove() undoes all. */
export function scratchPoolFiles(metaBytes: number, dataBytes: number): { dir: string; meta: LoopDevice; data: LoopDevice; remove(): void } {
  const dir = scratchDir();
  const files = [path.join(dir, 'meta'), path.join(dir, 'data')];
  files.forEach((f, i) => { fs.writeFileSync(f, ''); fs.truncateSync(f, i ? dataBytes : metaBytes); });
  const meta = Loop.attachSync(files[0]);
  const data = Loop.attachSync(files[1]);
  return {
    dir, meta, data,
    remove() {
      Loop.detachSync(meta.path);
      Loop.detachSync(data.path);
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
