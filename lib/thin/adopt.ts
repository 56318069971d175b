// Adopting a pool another tool made (dmsetup, a script, Docker's devicemapper driver): every thin id becomes a
// volume of the registry. Docker's own per-device records, when given, name and size them; the rest are
// named after a live device that maps them, else `thin-<id>` (reconcile()'s adoption).
import fs from 'node:fs';
import path from 'node:path';
import { dmError, withSystemErrors } from '../core/errors';
import { Sectors } from '../core/units';
import { checkOptions, checkPath, show } from '../core/validate';
import type { VolumeRecord } from './registry';

/** Options of {@link ThinPool.adopt}. */
export interface AdoptOptions {
  /** Where the adopted pool's registry goes (required: the pool's files are not the library's). */
  registryDir: string;
  /** Docker's devicemapper folder (`<docker root>/devicemapper`): its `metadata/<hash>` records name and size the devices. */
  docker?: string;
}

export function checkAdoptOptions(options: unknown, device: string): AdoptOptions {
  const o = checkOptions<AdoptOptions>(options, ['registryDir', 'docker'], 'adopt options');
  if (o.registryDir === undefined) throw dmError('ERR_DM_INVALID_ARGUMENT', 'adopt needs registryDir', device);
  checkPath(o.registryDir, 'registryDir');
  if (o.docker !== undefined) checkPath(o.docker, 'docker');
  return o;
}

/** One of Docker's device records, as its devicemapper driver wrote `metadata/<hash>`. */
interface DockerDevice { device_id: number; size: number; transaction_id?: number; initialized?: boolean; deleted?: boolean }

/** What {@link ThinPool.adopt} took from Docker's records ({@link ThinPool.adoption}). */
export interface DockerImport {
  /** Records to put: named by Docker's hash (`base` for the base device). */
  records: VolumeRecord[];
  /** Docker's records that the pool's metadata contradicts (no such thin id, a bad size, an id named twice). */
  skipped: {
    /** Docker's name for it (its hash, or `base`). */
    name: string;
    /** Why it was skipped. */
    reason: string;
  }[];

}

/**
 * Docker's records under `<dir>/metadata`, checked against the thin ids the pool really holds. Deleted
 * devices and files that are not device records (`deviceset-metadata`, `transaction-metadata`) are skipped.
 */
export function readDockerRecords(dir: string, idsInPool: Set<number>, blockSize: Sectors): DockerImport {
  const folder = path.join(dir, 'metadata');
  const names = withSystemErrors('read Docker\'s device records', folder, () => fs.readdirSync(folder)).sort();
  const records: VolumeRecord[] = [];
  const skipped: DockerImport['skipped'] = [];
  const seen = new Map<number, string>();
  for (const name of names) {
    if (name === 'deviceset-metadata' || name === 'transaction-metadata' || name.startsWith('.')) continue;
    let d: DockerDevice;
    try {
      d = JSON.parse(withSystemErrors('read a Docker device record', path.join(folder, name), () => fs.readFileSync(path.join(folder, name), 'utf8'))) as DockerDevice;
    } catch (e) {
      if (e instanceof SyntaxError) { skipped.push({ name, reason: 'not JSON' }); continue; }
      throw e;
    }
    if (d === null || typeof d !== 'object' || !Number.isSafeInteger(d.device_id) || !Number.isSafeInteger(d.size)) {
      skipped.push({ name, reason: `not a device record: ${show(d)}` });
      continue;
    }
    if (d.deleted) { skipped.push({ name, reason: 'marked deleted' }); continue; }
    if (!idsInPool.has(d.device_id)) { skipped.push({ name, reason: `thin id ${d.device_id} is not in the pool` }); continue; }
    if (seen.has(d.device_id)) { skipped.push({ name, reason: `thin id ${d.device_id} is ${seen.get(d.device_id)}'s too` }); continue; }
    if (d.size <= 0 || d.size % 512 !== 0) { skipped.push({ name, reason: `size ${d.size} is not whole sectors` }); continue; }
    seen.set(d.device_id, name);
    records.push({ name, id: d.device_id, size: (d.size / 512) as Sectors, parent: null, state: 'ready', created: Date.now() });
  }
  void blockSize;
  return { records, skipped };
}
