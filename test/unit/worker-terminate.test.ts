// A worker thread ended (worker.terminate(), or process.exit() ending the offload worker) while it is inside a
// native call that fails: the addon makes the error through lib/core/errors.ts's factory, a JS call that the
// termination cuts short. node-addon-api turns a failed throw there into a fatal error or std::terminate, which
// aborts the whole process; the addon must throw through the C API and leave quietly instead.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { emulated } from './emulation';

const WORKERS = 150;

// Not under qemu-user: there a small script whose worker threads loaded the addon segfaulted as it exited, even
// when the workers made no native call and ended by themselves (with the addon's code before the fix too; not
// natively), so the child's exit status would say nothing about the fix.
(emulated ? test.skip : test)('terminating workers in the middle of failing native calls never aborts the process', () => {
  const lib = path.resolve(__dirname, '../../lib');
  const script = `
    const { Worker } = require('node:worker_threads');
    const code = \`
      const { native } = require(${JSON.stringify(path.join(lib, 'core/binding'))});
      require(${JSON.stringify(path.join(lib, 'core/errors'))});
      require('node:worker_threads').parentPort.postMessage('go');
      for (;;) {
        try { native.lockFile('/nonexistent-devmapper-dir/x.lock'); } catch (e) { if (e.code !== 'ERR_DM_LOCK') throw e; }
      }\`;
    (async () => {
      for (let i = 0; i < ${WORKERS}; i++) {
        const w = new Worker(code, { eval: true });
        await new Promise((r) => w.once('message', r));
        await new Promise((r) => setTimeout(r, (i % 10) / 2));
        await w.terminate();
      }
      console.log('survived ' + ${WORKERS});
    })();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
  expect({ status: r.status, signal: r.signal, stdout: r.stdout.trim(), stderr: r.stderr }).toEqual({ status: 0, signal: null, stdout: `survived ${WORKERS}`, stderr: '' });
}, 180_000);
