// thin-provisioning-tools as the oracle for the metadata reader: thin_dump, thin_ls and thin_delta run on the
// same metadata (live pools through the same held metadata snapshot, with -m), their output parsed here.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ThinPool } from '../../lib';
import { dmsetup } from './helpers';

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

const attrs = (text: string): Record<string, string> =>
  Object.fromEntries([...text.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));

export interface DumpedDevice { id: number; mappedBlocks: number; transactionId: number; creationTime: number; snapshottedTime: number }
export interface Dump { transactionId: number; time: number; dataBlockSize: number; devices: DumpedDevice[] }

/** thin_dump's superblock and device elements (no mappings: -f xml, the devices' own attributes). */
export function thinDump(dev: string, snap: boolean): Dump {
  const xml = tool('thin_dump', ...(snap ? ['-m'] : []), dev);
  const sb = attrs(/<superblock([^>]*)>/.exec(xml)![1]);
  const devices = [...xml.matchAll(/<device([^>]*)>/g)].map((m) => {
    const a = attrs(m[1]);
    return { id: +a.dev_id, mappedBlocks: +a.mapped_blocks, transactionId: +a.transaction, creationTime: +a.creation_time, snapshottedTime: +a.snap_time };
  });
  return { transactionId: +sb.transaction, time: +sb.time, dataBlockSize: +sb.data_block_size, devices };
}

export interface Listed { id: number; mapped: number; exclusive: number; shared: number }

/** thin_ls's MAPPED_BLOCKS, EXCLUSIVE_BLOCKS, SHARED_BLOCKS per device, by id. */
export function thinLs(dev: string, snap: boolean): Listed[] {
  const out = tool('thin_ls', ...(snap ? ['-m'] : []), '--no-headers', '-o', 'DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS', dev);
  return out.trim().split('\n').filter(Boolean).map((l) => {
    const [id, mapped, exclusive, shared] = l.trim().split(/\s+/).map(Number);
    return { id, mapped, exclusive, shared };
  }).sort((a, b) => a.id - b.id);
}

export interface Range { kind: string; begin: number; length: number }
const KIND: Record<string, string> = { left_only: 'leftOnly', right_only: 'rightOnly', different: 'different' };

/** thin_delta's differing ranges between two thin ids (same ranges dropped), adjacent ones of a kind joined. */
export function thinDelta(dev: string, snap: boolean, a: number, b: number): Range[] {
  const xml = tool('thin_delta', ...(snap ? ['-m'] : []), '--thin1', String(a), '--thin2', String(b), dev);
  return joined([...xml.matchAll(/<(left_only|right_only|different|same)([^>]*)\/>/g)]
    .filter((m) => m[1] !== 'same')
    .map((m) => { const x = attrs(m[2]); return { kind: KIND[m[1]], begin: +x.begin, length: +x.length }; }));
}

export function joined(ranges: Range[]): Range[] {
  const out: Range[] = [];
  for (const r of ranges) {
    const last = out[out.length - 1];
    if (last && last.kind === r.kind && last.begin + last.length === r.begin) last.length += r.length;
    else out.push({ ...r });
  }
  return out;
}
