// Runs after every integration test: no dm device and no loop device may be left behind. Reads sysfs, not
// the library, so a bug in the library cannot hide its own leak. Leftovers are cleaned up and the test fails.
import fs from 'node:fs';
import { DeviceMapper, Loop } from '../../lib';

function dmDevices(): string[] {
  return fs.readdirSync('/sys/block').filter((e) => e.startsWith('dm-'))
    .map((e) => { try { return fs.readFileSync(`/sys/block/${e}/dm/name`, 'utf8').trim(); } catch { return e; } });
}

function boundLoops(): string[] {
  return fs.readdirSync('/sys/block').filter((e) => /^loop\d+$/.test(e) && fs.existsSync(`/sys/block/${e}/loop/backing_file`));
}

// dm devices that exist without a gendisk in sysfs (created, never loaded) show only in the DM list.
function dmListed(dm: DeviceMapper): string[] {
  return dm.listSync().map((d) => d.name);
}

// Under TCG the guest runs JS ~20x slower than the host; these are not timing assertions, only a bound.
jest.setTimeout(120_000);

afterEach(async () => {
  const dm = new DeviceMapper();
  try {
    let devices: string[] = [];
    let loops: string[] = [];
    for (let i = 0; i < 50; i++) {  // autoclear detaches at last close: give it a moment
      devices = [...new Set([...dmDevices(), ...dmListed(dm)])];
      loops = boundLoops();
      if (devices.length === 0 && loops.length === 0) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    // Clean up so the next test starts clean, then fail this one.
    for (let pass = 0; pass < 5 && dm.listSync().length; pass++) {
      for (const d of dm.listSync()) { try { dm.removeSync(d.name); } catch { /* dependents first */ } }
    }
    for (const l of Loop.list()) { try { Loop.detachSync(l.path); } catch { /* ignore */ } }
    throw new Error(`leak: dm devices [${devices.join(', ')}], loop devices [${loops.join(', ')}] left behind`);
  } finally {
    dm.close();
  }
});
