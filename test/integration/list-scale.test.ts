// LIST_DEVICES over 2,000 devices: the result outgrows the default 16 KiB buffer, so the library must grow
// it on BUFFER_FULL, and read every name, dev, event_nr and uuid right.
import { DeviceMapper } from '../../lib';

test('LIST over 2,000 devices is complete and correct', async () => {
  const dm = new DeviceMapper();
  const n = 2000;
  const name = (i: number) => `scale-${process.pid}-${String(i).padStart(5, '0')}-${'x'.repeat(i % 40)}`;
  const created = new Map<string, string>();
  try {
    for (let i = 0; i < n; i++) {
      const info = dm.createSync(name(i), i % 3 ? { uuid: `DEVMAPPER-scale-${i}` } : {});
      created.set(info.name, `${info.dev.major}:${info.dev.minor}`);
    }
    const listed = await dm.list();
    expect(listed).toHaveLength(n);
    for (const d of listed) {
      expect(created.get(d.name)).toBe(`${d.dev.major}:${d.dev.minor}`);
      const i = Number(d.name.split('-')[2]);
      expect(d.uuid).toBe(i % 3 ? `DEVMAPPER-scale-${i}` : undefined);
      expect(d.eventNr).toBe(0);
    }
    expect(dm.listSync({ uuids: false }).every((d) => d.uuid === undefined)).toBe(true);
  } finally {
    await dm.removeAll();
    dm.close();
  }
}, 300_000);
