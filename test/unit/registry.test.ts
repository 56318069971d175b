// The LMDB registry on its own (no kernel): O(1)-ish allocation, reuse of freed ids, atomic writes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LmdbRegistry, VolumeRecord } from '../../lib';

const dir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'registry-'));
const rec = (name: string, id: number): VolumeRecord => ({ name, id, size: 2048 as never, parent: null, state: 'ready', created: 0 });

test('ids are allocated from 0, freed ids are reused lowest first, pending is set and cleared', async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    for (let i = 0; i < 5; i++) { const id = r.nextFreeId(); expect(id).toBe(i); r.commit({ takeIds: [id], put: [rec(`v${i}`, id)] }); }
    r.commit({ remove: ['v1', 'v3'], freeIds: [3, 1] });
    expect(r.nextFreeId()).toBe(1);
    r.commit({ takeIds: [1] });
    expect(r.nextFreeId()).toBe(3);
    r.commit({ takeIds: [3, 9] });  // 9: taken in the pool behind our back; 5..8 stay free
    expect(r.nextFreeId()).toBe(5);
    expect(r.count()).toBe(3);
    expect(r.list().map((v) => v.name)).toEqual(['v0', 'v2', 'v4']);
    r.commit({ put: [{ ...rec('c1', 1), parent: 'v0' }, { ...rec('c2', 3), parent: 'v0' }] });
    expect(r.children('v0').map((v) => v.name)).toEqual(['c1', 'c2']);
    r.commit({ put: [{ ...rec('c1', 1), parent: 'v2' }], remove: ['c2'] });
    expect(r.children('v0')).toEqual([]);
    expect(r.children('v2').map((v) => v.name)).toEqual(['c1']);
    r.commit({ remove: ['c1'], freeIds: [1, 3] });
    r.commit({ pending: { op: 'create', id: 5, name: 'x', size: 8 as never, parent: null, fromTid: 1, toTid: 2 } });
    expect(r.pending()).toMatchObject({ id: 5 });
    r.commit({ pending: null });
    expect(r.pending()).toBeUndefined();
  } finally {
    await r.close();
    fs.rmSync(d, { recursive: true });
  }
});

test('100,000 volumes: allocation stays cheap', async () => {
  const d = dir();
  const r = LmdbRegistry.open(d);
  try {
    for (let i = 0; i < 100_000; i += 1000) {
      const batch: VolumeRecord[] = [];
      const ids: number[] = [];
      for (let k = 0; k < 1000; k++) { ids.push(i + k); batch.push(rec(`v${i + k}`, i + k)); }
      r.commit({ takeIds: ids, put: batch });
    }
    expect(r.count()).toBe(100_000);
    expect(r.nextFreeId()).toBe(100_000);
    r.commit({ freeIds: [77_777] });
    expect(r.nextFreeId()).toBe(77_777);
    expect(r.get('v99999')).toMatchObject({ id: 99_999 });
  } finally {
    await r.close();
    fs.rmSync(d, { recursive: true });
  }
});
