// Who holds a block device: its open count (DM info), the devices stacked on it (sysfs holders) and its mounts
// in every mount namespace (/proc/<pid>/mountinfo). Read when a deactivate, delete or destroy meets EBUSY, to
// say why. Best effort: plain fs reads, no subprocess; a process vanishing mid-scan or a file we may not read
// is skipped, and the scan is bounded, so reading holders never throws and never runs long.
import fs from 'node:fs';
import type { DevNumber } from '../core/binding';
import { DevmapperError, DeviceHolders, withDetails } from '../core/errors';
import { Steps, step, twin } from '../core/steps';
import type { DeviceMapper } from './device-mapper';

/** At most this many processes are looked into, for at most this long (a host with a huge process table). */
const MAX_PROCESSES = 65_536;
const SCAN_BUDGET_MS = 2_000;

/** The holders of the block device `dev`, whose open count (from DM info) is `openCount`. Never throws. */
export function readHolders(dev: DevNumber, openCount: number): DeviceHolders {
  return { openCount, devices: stackedDevices(dev), mounts: mountsOf(dev) };
}

// /sys/dev/block/<maj>:<min>/holders/<dm-N>, named by /sys/block/dm-N/dm/name (other kinds by their kernel name).
function stackedDevices(dev: DevNumber): string[] {
  let entries: string[];
  try { entries = fs.readdirSync(`/sys/dev/block/${dev.major}:${dev.minor}/holders`); } catch { return []; }
  return entries.map((e) => {
    try { return fs.readFileSync(`/sys/block/${e}/dm/name`, 'utf8').trim() || e; } catch { return e; }
  });
}

// One mount per mount namespace that mounts `dev`, as the first process met in it sees it. Namespaces are told
// apart by the inode of /proc/<pid>/ns/mnt; where that link cannot be read, by the mount ids (global across
// namespaces) of the matching mounts.
function mountsOf(dev: DevNumber): { pid: number; mountPoint: string }[] {
  const want = `${dev.major}:${dev.minor}`;
  let pids: number[];
  try { pids = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).sort((a, b) => a - b); } catch { return []; }
  // Our own namespace first: its mount point is the one the caller can act on.
  pids = [process.pid, ...pids.filter((p) => p !== process.pid)].slice(0, MAX_PROCESSES);
  const seen = new Set<string>();
  const out: { pid: number; mountPoint: string }[] = [];
  const deadline = Date.now() + SCAN_BUDGET_MS;
  for (const pid of pids) {
    if (Date.now() > deadline) break;
    let ns: string | undefined;
    try { ns = fs.readlinkSync(`/proc/${pid}/ns/mnt`); } catch { /* gone, or not ours to read */ }
    if (ns !== undefined && seen.has(ns)) continue;
    let text: string;
    try { text = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8'); } catch { continue; }
    if (ns !== undefined) seen.add(ns);
    const matches = matchingMounts(text, want);
    if (!matches.length) continue;
    const key = ns ?? `ids:${matches.map((m) => m.id).join(',')}`;
    if (ns === undefined) {
      if (seen.has(key)) continue;
      seen.add(key);
    }
    out.push({ pid, mountPoint: matches[0].mountPoint });
  }
  return out;
}

// mountinfo lines: "<id> <parent> <maj:min> <root> <mount point> ...", the mount point with octal escapes.
function matchingMounts(text: string, want: string): { id: string; mountPoint: string }[] {
  const out: { id: string; mountPoint: string }[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f[2] === want && f[4] !== undefined) out.push({ id: f[0], mountPoint: unescapeOctal(f[4]) });
  }
  return out;
}

const unescapeOctal = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** "open 2 times; mounted at /mnt/x (pid 1, and in 1 other namespace); held by dm device y". */
export function describeHolders(h: DeviceHolders): string {
  const parts = [`open ${plural(h.openCount, 'time')}`];
  if (h.mounts.length) {
    const [first] = h.mounts;
    const others = h.mounts.length - 1;
    parts.push(`mounted at ${first.mountPoint} (pid ${first.pid}${others ? `, and in ${plural(others, 'other namespace')}` : ''})`);
  }
  if (h.devices.length) parts.push(`held by ${h.devices.length === 1 ? 'dm device' : 'dm devices'} ${h.devices.join(', ')}`);
  return parts.join('; ');
}

const isBusy = (e: unknown): e is DevmapperError =>
  e instanceof DevmapperError && (e.code === 'EBUSY' || e.code === 'ERR_DM_BUSY');

/**
 * `e`, if it is a busy error (EBUSY, ERR_DM_BUSY) that does not say who holds the dm device `name` yet, with
 * its holders attached and named in its message; any other error as it is. Never throws (a device gone
 * meanwhile, an info that fails: the error stays as it was).
 */
export function* explainBusy(e: unknown, dm: DeviceMapper, name: string): Steps<unknown> {
  if (!isBusy(e) || e.holders) return e;
  try {
    const info = yield* step(twin(dm, 'infoIfExists', name));
    if (!info) return e;
    const holders = readHolders(info.dev, info.openCount);
    e.message += `: ${name} is held: ${describeHolders(holders)}`;
    return withDetails(e, { holders });
  } catch {
    return e;
  }
}
