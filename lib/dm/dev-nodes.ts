// /dev/mapper/<name> nodes. The kernel makes only /dev/dm-N. Without udev nobody makes the named node, so
// (like libdm's fallback) we make it after create/resume, remove it on remove and move it on rename. With
// udev running we leave it to udev and wait for it, bounded, then fall back to making it ourselves.
import fs from 'node:fs';
import { native, DevNumber } from '../core/binding';
import type { NodePolicy } from './types';
import { Steps, sleep, step } from '../core/steps';

export const MAPPER_DIR = native.mapperDir;

/** `/dev/mapper/<name>`. Names are checked before they get here: no '/', not '.' or '..'. */
export function mapperPath(name: string): string {
  return `${MAPPER_DIR}/${name}`;
}

export function udevRunning(): boolean {
  return fs.existsSync('/run/udev/control');
}

export function resolvePolicy(policy: NodePolicy): 'manage' | 'udev' | 'none' {
  return policy === 'auto' ? (udevRunning() ? 'udev' : 'manage') : policy;
}

function sameNode(p: string, dev: DevNumber): boolean {
  try {
    const n = native.deviceNumber(p);
    return n.major === dev.major && n.minor === dev.minor;
  } catch {
    return false;
  }
}

export function makeNode(name: string, dev: DevNumber): void {
  native.ensureBlockNode(mapperPath(name), { major: dev.major, minor: dev.minor });  // the addon's mode: 0600
}

/** Removes the node if it is the one for `dev` (after REMOVE without udev, the addon unlinks it itself). */
export function removeNode(name: string, dev: DevNumber): void {
  const p = mapperPath(name);
  if (!sameNode(p, dev)) return;
  try {
    fs.unlinkSync(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** Removes a block node left at `/dev/mapper/<name>` for a device that no longer exists. */
export function removeStaleNode(name: string): void {
  try {
    if (fs.lstatSync(mapperPath(name)).isBlockDevice()) fs.unlinkSync(mapperPath(name));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

export function renameNode(from: string, to: string, dev: DevNumber): void {
  removeNode(from, dev);
  makeNode(to, dev);
}

/** Waits (bounded) for udev to make the node; makes it if udev did not. */
export function* awaitUdevNodeSteps(name: string, dev: DevNumber, timeoutMs: number): Steps<void> {
  const deadline = Date.now() + timeoutMs;
  while (!sameNode(mapperPath(name), dev) && Date.now() < deadline) yield* step(sleep(10));
  if (!sameNode(mapperPath(name), dev)) makeNode(name, dev);
}
