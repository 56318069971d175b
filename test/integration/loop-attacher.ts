// Child process for the concurrent-attach test: attaches N files as fast as it can, reports, exits.
// Attaches run in parallel promises so the process itself also races on the libuv pool.
import fs from 'node:fs';
import path from 'node:path';
import { Loop } from '../../lib';

async function main() {
  const [dir, tag, count] = process.argv.slice(2);
  const files = Array.from({ length: Number(count) }, (_, i) => {
    const f = path.join(dir, `${tag}-${i}.img`);
    fs.writeFileSync(f, Buffer.alloc(64 * 1024));
    return f;
  });
  const attached = await Promise.all(files.map(async (file) => ({ file, path: (await Loop.attach(file)).path })));
  process.send!(attached, () => process.exit(0));
}
main().catch((e) => { console.error(e); process.exit(1); });
