// A scripted DM binding for host tests: a small model of the kernel's dm devices and of one thin-pool's
// messages, behind the same DmBinding interface the addon implements. It proves request building and the
// library's decisions, not the kernel: every claim about ioctls is tested in the VM.
import os from 'node:os';
import { DeviceMapper, sectors } from '../../lib';
import type { DmBinding, RawDmStep, RawSysError } from '../../lib';
import { K } from '../../lib/core/binding';
import { kernelError } from '../../lib/core/errors';

const E = os.constants.errno;
const CMD_NAMES = new Map(Object.entries(K).filter(([k]) => k.endsWith('_CMD')).map(([k, v]) => [v, k.replace(/_CMD$/, '')]));

interface FakeTarget { start: number; length: number; type: string; params: string }
interface FakeDevice {
  name: string; uuid: string; minor: number; live?: FakeTarget[]; inactive?: FakeTarget[]; suspended: boolean;
  readOnly: boolean; openCount: number; eventNr: number;
}
export interface Call { cmd: string; name?: string; uuid?: string; data?: string; targets?: FakeTarget[]; flags: number }

export class FakeKernel {
  readonly devices = new Map<string, FakeDevice>();
  readonly calls: Call[] = [];
  /** The thin-pool's transaction id and thin ids (one pool, named by `pool` when it is loaded). */
  tid = 0;
  readonly thins = new Set<number>();
  /** A command (by name) that fails once with this errno. */
  failNext = new Map<string, number>();
  closed: number[] = [];
  private nextMinor = 0;
  private fds = 10;

  get binding(): DmBinding {
    const run = (cmd: number, head: Float64Array, name?: string, uuid?: string, data?: string, targets?: (number | string)[]) =>
      this.ioctl(cmd, head, name, uuid, data, targets);
    return {
      openControl: () => this.fds++,
      closeFd: (fd: number) => { this.closed.push(fd); },
      dm: (_fd, cmd, head, name, uuid, data, targets) => run(cmd, head, name, uuid, data, targets),
      dmAsync: (_fd, cmd, head, name, uuid, data, targets) => new Promise((resolve, reject) => {
        try { resolve(run(cmd, head, name, uuid, data, targets)); } catch (e) { reject(e); }
      }),
      dmSeq: (_fd, steps) => this.seq(steps),
      dmSeqAsync: (_fd, steps) => Promise.resolve(this.seq(steps)),
      dmWait: (_fd, _cmd, _head, name) => this.never('DM_DEV_WAIT', name ?? ''),
      pollControl: () => this.never('DM_DEV_ARM_POLL', '/dev/mapper/control'),
    };
  }

  /** A wait that only ends by cancel(reason), as the addon's thread does. */
  private never<T>(command: string, target: string) {
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((_r, j) => { reject = j; });
    return {
      promise,
      cancel: (reason?: string) => { reject(this.error(E.ECANCELED, command, target, reason ?? 'cancelled')); return true; },
    };
  }

  private seq(steps: RawDmStep[]) {
    const replies = [];
    for (const [cmd, head, name, uuid, data, targets] of steps) {
      try {
        replies.push(this.ioctl(cmd, head, name, uuid, data, targets)!);
      } catch (error) {
        return { replies, error: error as Error };
      }
    }
    return { replies };
  }

  private error(errno: number, command: string, target: string, detail = ''): Error {
    const raw: RawSysError = { errno, syscall: 'ioctl', command, target, detail, strerror: os.constants.errno && `errno ${errno}` };
    return kernelError(raw);
  }

  private ioctl(cmd: number, head: Float64Array, name?: string, uuid?: string, data?: string, flat?: (number | string)[]) {
    const command = CMD_NAMES.get(cmd) ?? `cmd ${cmd}`;
    const flags = head[K.DM_HEAD_FLAGS];
    const targets: FakeTarget[] | undefined = flat && [];
    for (let i = 0; flat && i < flat.length; i += 4)
      targets!.push({ start: flat[i] as number, length: flat[i + 1] as number, type: flat[i + 2] as string, params: flat[i + 3] as string });
    this.calls.push({ cmd: command, name, uuid, data, targets, flags });
    const failing = this.failNext.get(command);
    if (failing) { this.failNext.delete(command); throw this.error(failing, command, name ?? ''); }
    const find = () => {
      const d = name ? this.devices.get(name) : [...this.devices.values()].find((x) => x.uuid === uuid);
      if (!d) {
        if (head[K.DM_HEAD_EXPECT_ERRNO] === E.ENXIO) return undefined;
        throw this.error(E.ENXIO, command, name ?? uuid ?? '');
      }
      return d;
    };
    const reply = (d: FakeDevice, payload?: object) => {
      head[K.DM_HEAD_FLAGS] = (d.suspended ? K.DM_SUSPEND_FLAG : 0) | (d.readOnly ? K.DM_READONLY_FLAG : 0) |
        (d.live ? K.DM_ACTIVE_PRESENT_FLAG : 0) | (d.inactive ? K.DM_INACTIVE_PRESENT_FLAG : 0);
      head[K.DM_HEAD_MAJOR] = 253; head[K.DM_HEAD_MINOR] = d.minor;
      head[K.DM_HEAD_OPEN_COUNT] = d.openCount; head[K.DM_HEAD_EVENT_NR] = d.eventNr;
      head[K.DM_HEAD_TARGET_COUNT] = d.live?.length ?? 0;
      head.set([4, 48, 0], K.DM_HEAD_VERSION);
      const key = `${d.name}\0${d.uuid}`;
      return payload ? { key, ...payload } : key;
    };
    switch (command) {
      case 'DM_VERSION': head.set([4, 48, 0], K.DM_HEAD_VERSION); return '\0';
      case 'DM_LIST_DEVICES':
        return { key: '\0', devices: [...this.devices.values()].map((d) => ({ name: d.name, dev: { major: 253, minor: d.minor }, uuid: d.uuid })) };
      case 'DM_DEV_CREATE': {
        if (this.devices.has(name!)) throw this.error(E.EBUSY, command, name!);
        const d: FakeDevice = { name: name!, uuid: uuid ?? '', minor: this.nextMinor++, suspended: false, readOnly: (flags & K.DM_READONLY_FLAG) !== 0, openCount: 0, eventNr: 0 };
        this.devices.set(d.name, d);
        return reply(d);
      }
      case 'DM_DEV_REMOVE': {
        const d = find()!;
        if (d.openCount > 0) throw this.error(E.EBUSY, command, d.name);
        this.devices.delete(d.name);
        return reply(d);
      }
      case 'DM_DEV_STATUS': { const d = find(); return d ? reply(d) : null; }
      case 'DM_DEV_SUSPEND': {
        const d = find()!;
        if (flags & K.DM_SUSPEND_FLAG) d.suspended = true;
        else { if (d.inactive) { d.live = d.inactive; d.inactive = undefined; } d.suspended = false; }
        return reply(d);
      }
      case 'DM_TABLE_LOAD': { const d = find()!; d.inactive = targets; return reply(d); }
      case 'DM_TABLE_CLEAR': { const d = find()!; d.inactive = undefined; return reply(d); }
      case 'DM_TABLE_DEPS': { const d = find()!; return reply(d, { deps: [] }); }
      case 'DM_TABLE_STATUS': {
        const d = find()!;
        const table = (flags & K.DM_QUERY_INACTIVE_TABLE_FLAG ? d.inactive : d.live) ?? [];
        const wantTable = (flags & K.DM_STATUS_TABLE_FLAG) !== 0;
        return reply(d, { targets: table.map((t) => ({ ...t, params: wantTable ? t.params : this.status(t) })) });
      }
      case 'DM_TARGET_MSG': { const d = find()!; this.message(d, data!); return reply(d); }
      default: throw this.error(E.ENOTTY, command, name ?? '');
    }
  }

  private status(t: FakeTarget): string {
    if (t.type === 'thin-pool') return `${this.tid} 10/1000 0/100 - rw discard_passdown queue_if_no_space - 100`;
    if (t.type === 'thin') return '0 -';
    return '';
  }

  private message(d: FakeDevice, text: string): void {
    const w = text.split(' ');
    const fail = (errno: number) => { throw this.error(errno, 'DM_TARGET_MSG', d.name, text); };
    const id = Number(w[1]);
    switch (w[0]) {
      case 'create_thin': if (this.thins.has(id)) fail(E.EEXIST); this.thins.add(id); return;
      case 'create_snap': if (this.thins.has(id)) fail(E.EEXIST); if (!this.thins.has(Number(w[2]))) fail(E.ENODATA); this.thins.add(id); return;
      case 'delete': if (!this.thins.delete(id)) fail(E.ENODATA); return;
      case 'set_transaction_id': if (Number(w[1]) !== this.tid) fail(E.EINVAL); this.tid = Number(w[2]); return;
      default: fail(E.EINVAL);
    }
  }
}

/** A scripted kernel holding a thin-pool device `name` as ThinPool.create leaves one, and a DeviceMapper on it. */
export function scriptedPoolDevice(name: string): { k: FakeKernel; dm: DeviceMapper } {
  const k = new FakeKernel();
  const dm = new DeviceMapper({ binding: k.binding, nodes: 'none' });
  dm.createDeviceSync(name, [{ start: sectors(0), length: sectors(128 * 100), type: 'thin-pool', params: '250:1 250:0 128 10 0' }], { uuid: `DEVMAPPER-POOL-${name}` });
  return { k, dm };
}
