// Differential test against dmsetup, an independent implementation of the same ioctls: for devices the
// library made, dmsetup reads the same table, status and info; for devices dmsetup made, the library does.
import { DeviceMapper, sectors } from '../../lib';
import { dmsetup, hasDmsetup, removeQuietly, scratchLoop, uniqueName, zeroMetadata } from './helpers';

const dm = new DeviceMapper();
afterAll(() => dm.close());
const maybe = hasDmsetup() ? test : test.skip;

// dmsetup prints an empty params field with a trailing space; compare lines without trailing blanks.
const lines = (text: string) => text.split('\n').map((l) => l.trimEnd()).filter(Boolean).join('\n');
const line = (t: { start: number; length: number; type: string; params: string }) =>
  `${t.start} ${t.length} ${t.type}${t.params ? ' ' + t.params : ''}`.trimEnd();

maybe('library-made devices read the same through dmsetup', async () => {
  const meta = scratchLoop(16 << 20);
  const data = scratchLoop(64 << 20);
  zeroMetadata(meta.path);
  const pool = uniqueName('opool');
  const thin = uniqueName('othin');
  const mix = uniqueName('omix');
  try {
    const p = await dm.createDevice(pool, [{ start: sectors(0), length: sectors(131072), type: 'thin-pool',
      params: `7:${meta.number} 7:${data.number} 256 100 1 skip_block_zeroing` }], { uuid: `DEVMAPPER-${pool}` });
    await dm.message(pool, 0, 'create_thin 3');
    await dm.createDevice(thin, [{ start: sectors(0), length: sectors(8192), type: 'thin', params: `${p.dev.major}:${p.dev.minor} 3` }]);
    await dm.createDevice(mix, [
      { start: sectors(0), length: sectors(1024), type: 'linear', params: `7:${data.number} 2048` },
      { start: sectors(1024), length: sectors(512), type: 'zero', params: '' },
    ], { readOnly: true });
    for (const name of [pool, thin, mix]) {
      const table = (await dm.table(name)).map(line).join('\n');
      expect(lines(dmsetup('table', name))).toBe(table);
      const status = (await dm.status(name, { noflush: true })).map(line).join('\n');
      expect(lines(dmsetup('status', '--noflush', name))).toBe(status);
      const info = await dm.info(name);
      const cols = dmsetup('info', '-c', '--noheadings', '--separator', '|', '-o', 'name,uuid,major,minor,open,events,segments,attr', name).trim().split('|');
      expect(cols.slice(0, 7)).toEqual([name, info.uuid, `${info.dev.major}`, `${info.dev.minor}`, `${info.openCount}`, `${info.eventNr}`, `${info.targetCount}`]);
      // attr: (L)ive, (I)nactive, (s)uspended, (r)ead-only/(w)ritable
      expect(cols[7]).toBe(`${info.liveTable ? 'L' : '-'}${info.inactiveTable ? 'I' : '-'}${info.suspended ? 's' : '-'}${info.readOnly ? 'r' : 'w'}`);
    }
    const listed = dmsetup('ls').trim().split('\n').map((l) => l.split('\t')[0]).sort();
    expect(listed).toEqual((await dm.list()).map((d) => d.name).sort());
  } finally {
    removeQuietly(dm, mix, thin, pool);
    meta.detach();
    data.detach();
  }
});

maybe('dmsetup-made devices read right through the library', async () => {
  const data = scratchLoop(8 << 20);
  const name = uniqueName('dmsetup');
  try {
    dmsetup('create', name, '--uuid', `ORACLE-${name}`, '--table',
      `0 2048 linear 7:${data.number} 0\n2048 2048 striped 1 128 7:${data.number} 4096`);
    const info = await dm.info(name);
    expect(info).toMatchObject({ name, uuid: `ORACLE-${name}`, liveTable: true, targetCount: 2 });
    expect(await dm.table(name)).toEqual([
      { start: 0, length: 2048, type: 'linear', params: `7:${data.number} 0` },
      { start: 2048, length: 2048, type: 'striped', params: `1 128 7:${data.number} 4096` },
    ]);
    expect((await dm.list()).find((d) => d.name === name)).toMatchObject({ uuid: `ORACLE-${name}`, dev: info.dev });
    dmsetup('message', name, '0', '@stats_create - /1');
    // The kernel's output ends in a newline; dmsetup prints it as it came.
    expect(await dm.message(name, 0, '@stats_list')).toBe(dmsetup('message', name, '0', '@stats_list'));
    dmsetup('suspend', name);
    expect(dm.infoSync(name).suspended).toBe(true);
    await dm.resume(name);
    expect(dmsetup('info', '-c', '--noheadings', '-o', 'attr', name).trim()[2]).toBe('-');  // not suspended
  } finally {
    removeQuietly(dm, name);
    data.detach();
  }
});
