// thin-provisioning-tools as the oracle for the metadata reader: thin_dump, thin_ls and thin_delta run on the
// same metadata (live pools through the same held metadata snapshot, with -m), their output parsed by
// ../fixtures/metadata/tool-output.ts.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ThinPool } from '../../lib';
import { dmsetup } from './helpers';
import { Dump, Listed, Range, parseThinDelta, parseThinDump, parseThinLs } from '../fixtures/metadata/tool-output';

export function tool(cmd: string, ...args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 30 });
}

/** The metadata device of a pool, as a node (the table names it major:minor). */
export function metadataNode(pool: ThinPool): string {
  return `/dev/${path.basename(fs.readlinkSync(`/sys/dev/block/${pool.params.metadataDev}`))}`;
}

/** fn() while a metadata snapshot reserved with dmsetup is held (another tool's, to the library). */
export async function withHeldSnapshot<T>(poolName: string, fn: () => Promise<T> | T): Promise<T> {
  dmsetup('message', poolName, '0', 'reserve_metadata_snap');
  try {
    return await fn();
  } finally {
    dmsetup('message', poolName, '0', 'release_metadata_snap');
  }
}

export type { Dump, DumpedDevice, Listed, Range } from '../fixtures/metadata/tool-output';
export { joined } from '../fixtures/metadata/tool-output';

/** thin_dump's superblock and device elements (no mappings: -f xml, the devices' own attributes). */
export function thinDump(dev: string, snap: boolean): Dump {
  return parseThinDump(tool('thin_dump', ...(snap ? ['-m'] : []), dev));
}

/** thin_ls's MAPPED_BLOCKS, EXCLUSIVE_BLOCKS, SHARED_BLOCKS per device, by id. */
export function thinLs(dev: string, snap: boolean): Listed[] {
  return parseThinLs(tool('thin_ls', ...(snap ? ['-m'] : []), '--no-headers', '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', dev));
}

/** thin_delta's differing ranges between two thin ids (same ranges dropped), adjacent ones of a kind joined. */
export function thinDelta(dev: string, snap: boolean, a: number, b: number): Range[] {
  return parseThinDelta(tool('thin_delta', ...(snap ? ['-m'] : []), '--thin1', String(a), '--thin2', String(b), dev));
}
