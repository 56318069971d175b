// The addon's own threads (waits that can be cancelled: lock waits, DM_DEV_WAIT, timed suspends) take no
// signal but the wake signal cancel() sends: a process-directed signal (SIGCHLD when a child exits) delivered
// to one of them would end its syscall with an EINTR nobody asked for.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { native } from '../../lib/core/binding';
import { emulated } from './emulation';

/** The signals (1-64) a thread's SigBlk mask leaves unblocked. */
function unblocked(status: string): number[] {
  const mask = BigInt('0x' + /^SigBlk:\s*([0-9a-f]+)$/m.exec(status)![1]);
  return Array.from({ length: 64 }, (_, i) => i + 1).filter((s) => ((mask >> BigInt(s - 1)) & 1n) === 0n);
}

const threadMasks = (): number[][] => fs.readdirSync('/proc/self/task').flatMap((tid) => {
  try { return [unblocked(fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))]; } catch { return []; }
});

// Under qemu-user the guest's signal masks live in the emulator, not in the masks /proc shows.
(emulated ? test.skip : test)('a lock wait on a thread of its own blocks every signal but its wake signal and synchronous faults', async () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'own-thread-')), 'lock');
  const held = native.lockFile(file);
  const wait = native.lockFileAsync(file);
  try {
    const wake = 34 + 6;  // SIGRTMIN + 6, as native/blocking_thread.cc picks it (glibc's SIGRTMIN is 34)
    // SIGKILL and SIGSTOP cannot be blocked; glibc keeps its two internal signals (32, 33) deliverable.
    const expected = [4, 5, 6, 7, 8, 9, 11, 19, 31, 32, 33, wake].sort((a, b) => a - b);
    let found = false;
    for (let i = 0; i < 200 && !found; i++) {
      found = threadMasks().some((m) => JSON.stringify(m) === JSON.stringify(expected));
      if (!found) await new Promise((r) => setTimeout(r, 10));
    }
    expect(found).toBe(true);
  } finally {
    fs.closeSync(held);
    fs.closeSync(await wait.promise);
  }
});
