// DM_DEV_WAIT and DM_DEV_ARM_POLL against the real kernel; both wait off the libuv pool and can be cancelled.
import { DeviceMapper, sectors } from '../../lib';
import { removeQuietly, uniqueName } from './helpers';

const zero = [{ start: sectors(0), length: sectors(128), type: 'zero', params: '' }];

test('DEV_WAIT returns when the event_nr moves, with the status', async () => {
  const dm = new DeviceMapper();
  const name = uniqueName('wait');
  try {
    const before = await dm.createDevice(name, zero);
    const waiting = dm.wait(name, before.eventNr);
    await new Promise((r) => setTimeout(r, 50));
    await dm.rename(name, `${name}-r`);  // a rename raises a table event on the device
    await dm.rename(`${name}-r`, name);
    const got = await waiting;
    expect(got.info.eventNr).toBeGreaterThan(before.eventNr);
    expect(got.status).toEqual([{ start: 0, length: 128, type: 'zero', params: '' }]);
    // An event_nr that already differs returns at once, also through the sync twin.
    expect(dm.waitSync(name, before.eventNr).info.name).toBe(name);
  } finally {
    removeQuietly(dm, name);
    dm.close();
  }
});

test('DEV_WAIT is cancellable: timeout, abort signal, close; a removed device ends it with ENXIO', async () => {
  const dm = new DeviceMapper();
  const name = uniqueName('cancel');
  try {
    const { eventNr } = await dm.createDevice(name, zero);
    await expect(dm.wait(name, eventNr, { timeoutMs: 50 })).rejects.toMatchObject({ code: 'ERR_DM_TIMEOUT' });
    const ac = new AbortController();
    const aborted = dm.wait(name, eventNr, { signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    await expect(aborted).rejects.toMatchObject({ code: 'ERR_DM_ABORTED' });
    // Many waits at once do not starve the libuv pool: a pool-backed call still completes.
    const waits = Array.from({ length: 8 }, () => dm.wait(name, eventNr).catch((e) => e));
    expect((await dm.info(name)).name).toBe(name);
    dm.close();
    for (const e of await Promise.all(waits)) expect(e).toMatchObject({ code: 'ERR_DM_CLOSED' });
  } finally {
    const dm2 = new DeviceMapper();
    removeQuietly(dm2, name);
    dm2.close();
  }
});

test('ARM_POLL: poll wakes on a create, and not before', async () => {
  const dm = new DeviceMapper();
  const name = uniqueName('poll');
  try {
    await dm.armPoll();
    expect(await dm.pollEvent({ timeoutMs: 50 })).toBe(false);
    const woke = dm.pollEvent({ timeoutMs: 10000 });
    const other = new DeviceMapper();
    await other.create(name);
    other.close();
    expect(await woke).toBe(true);
    dm.armPollSync();
    expect(await dm.pollEvent({ timeoutMs: 20 })).toBe(false);
    const ac = new AbortController();
    const p = dm.pollEvent({ signal: ac.signal });
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: 'ERR_DM_ABORTED' });
  } finally {
    removeQuietly(dm, name);
    dm.close();
  }
});
