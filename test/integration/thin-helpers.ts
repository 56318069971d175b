// Pool fixtures for the thin tests: a file-backed pool in a scratch folder, destroyed with its files.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ThinPool, ThinPoolCreateOptions } from '../../lib';
import { scratchDir, uniqueName } from './helpers';

export async function withPool<T>(o: Partial<ThinPoolCreateOptions>, fn: (pool: ThinPool, dir: string) => Promise<T>): Promise<T> {
  const dir = scratchDir();
  const pool = await ThinPool.create({ name: uniqueName('pool'), dataFile: path.join(dir, 'data'), dataSize: '256M', ...o });
  try {
    return await fn(pool, dir);
  } finally {
    await pool.destroy({ deleteFiles: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function writeAt(device: string, offset: number, data: Buffer | string): void {
  const fd = fs.openSync(device, 'r+');
  try {
    const buf = Buffer.isBuffer(data) ? data : Buffer.from(data);
    const block = Buffer.alloc(Math.ceil(buf.length / 4096) * 4096);
    buf.copy(block);
    fs.writeSync(fd, block, 0, block.length, offset);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function readAt(device: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(device, 'r');
  try {
    const buf = Buffer.alloc(length);
    fs.readSync(fd, buf, 0, length, offset);
    return buf;
  } finally {
    fs.closeSync(fd);
  }
}

export function checksum(device: string, length: number): string {
  return crypto.createHash('sha256').update(readAt(device, 0, length)).digest('hex');
}
