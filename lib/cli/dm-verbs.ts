// The dmsetup-compatible verbs. Their output is dmsetup's (lvm2 2.03.16), byte for byte, where dmsetup
// defines one: the formats below are dmsetup.c's printf formats and libdm's report layout.
import fs from 'node:fs';
import path from 'node:path';
import { DeviceMapper } from '../dm/device-mapper';
import type { DeviceInfo, Target } from '../dm/types';
import { sectors } from '../core/units';
import { deviceTree } from './tree';
import { Io, Options, Parsed, UsageError, arity, flag, integerArg, parse, str } from './common';

export interface DmVerb { usage: string; summary: string; options: Options; run(dm: DeviceMapper, p: Parsed, io: Io): void }

// ---- output formats ------------------------------------------------------------------------------------

/** dm_task_get_read_ahead: sysfs read_ahead_kb * 2 (sectors); undefined (line left out) when sysfs has none. */
function readAhead(info: DeviceInfo): number | undefined {
  try {
    const kb = fs.readFileSync(`/sys/dev/block/${info.dev.major}:${info.dev.minor}/bdi/read_ahead_kb`, 'utf8');
    return (parseInt(kb, 10) || 0) * 2;
  } catch {
    return undefined;
  }
}

/** _display_info_long. */
export function infoLong(info: DeviceInfo): string {
  let s = `Name:              ${info.name}\n`;
  s += `State:             ${info.suspended ? 'SUSPENDED' : 'ACTIVE'}${info.readOnly ? ' (READ-ONLY)' : ''}${info.deferredRemove ? ' (DEFERRED REMOVE)' : ''}\n`;
  const ra = readAhead(info);
  if (ra !== undefined) s += `Read Ahead:        ${ra}\n`;
  if (!info.liveTable && !info.inactiveTable) s += 'Tables present:    None\n';
  else s += `Tables present:    ${info.liveTable ? 'LIVE' : ''}${info.liveTable && info.inactiveTable ? ' & ' : ''}${info.inactiveTable ? 'INACTIVE' : ''}\n`;
  s += `Open count:        ${info.openCount}\n`;
  s += `Event number:      ${info.eventNr}\n`;
  s += `Major, minor:      ${info.dev.major}, ${info.dev.minor}\n`;
  s += `Number of targets: ${info.targetCount}\n`;
  if (info.uuid) s += `UUID: ${info.uuid}\n`;
  return s + '\n';
}

interface Column { head: string; width: number; right: boolean; get(i: DeviceInfo): string }
/** dmsetup's report fields of DeviceInfo, by id: heading, default width, alignment (numbers right). */
const COLUMNS: Record<string, Column> = {
  name: { head: 'Name', width: 16, right: false, get: (i) => i.name },
  uuid: { head: 'UUID', width: 32, right: false, get: (i) => i.uuid },
  major: { head: 'Maj', width: 3, right: true, get: (i) => `${i.dev.major}` },
  minor: { head: 'Min', width: 3, right: true, get: (i) => `${i.dev.minor}` },
  attr: { head: 'Stat', width: 4, right: false, get: (i) => `${i.liveTable ? 'L' : '-'}${i.inactiveTable ? 'I' : '-'}${i.suspended ? 's' : '-'}${i.readOnly ? 'r' : 'w'}` },
  open: { head: 'Open', width: 4, right: true, get: (i) => `${i.openCount}` },
  segments: { head: 'Targ', width: 4, right: true, get: (i) => `${i.targetCount}` },
  events: { head: 'Event', width: 6, right: true, get: (i) => `${i.eventNr}` },
  devno: { head: 'DevNo', width: 5, right: false, get: (i) => `${i.dev.major}:${i.dev.minor}` },
  suspended: { head: 'Suspended', width: 9, right: false, get: (i) => (i.suspended ? 'Suspended' : 'Active') },
  readonly: { head: 'Read-only', width: 9, right: false, get: (i) => (i.readOnly ? 'Read-only' : 'Writeable') },
};
export const DEFAULT_COLUMNS = 'name,major,minor,attr,open,segments,events,uuid';

export interface ColumnsOptions { fields?: string; headings?: boolean; separator?: string }

/**
 * `info -c`: libdm's report. Aligned (the default): headings, each field padded to its column's width (the
 * widest of the default width and the values; the last column too), joined by one space. `--noheadings`, as
 * dmsetup: no headings, no padding, ':' between fields; `--separator` likewise unaligned.
 */
export function infoColumns(infos: DeviceInfo[], o: ColumnsOptions = {}): string {
  const ids = (o.fields ?? DEFAULT_COLUMNS).replace(/^\+/, `${DEFAULT_COLUMNS},`).split(',').map((f) => f.trim()).filter(Boolean);
  const cols = ids.map((id) => {
    const c = COLUMNS[id];
    if (!c) throw new UsageError(`info: unknown field ${JSON.stringify(id)} (${Object.keys(COLUMNS).join(', ')})`, 'info');
    return c;
  });
  const aligned = o.headings !== false && o.separator === undefined;
  const separator = o.separator ?? (o.headings === false ? ':' : ' ');
  const rows = infos.map((i) => cols.map((c) => c.get(i)));
  if (rows.length === 0) return '';
  if (!aligned) return rows.map((r) => r.join(separator) + '\n').join('') ;
  const widths = cols.map((c, k) => Math.max(c.width, ...rows.map((r) => r[k].length)));
  const lines = rows.map((r) => r.map((v, k) => (cols[k].right ? v.padStart(widths[k]) : v.padEnd(widths[k]))).join(separator));
  if (o.headings !== false) lines.unshift(cols.map((c, k) => c.head.padEnd(widths[k])).join(separator));
  return lines.join('\n') + '\n';
}

/** One table or status line: dmsetup prints "start length type " and then the params, even when empty. */
export const targetLine = (t: Target): string => `${t.start} ${t.length} ${t.type} ${t.params}`;

// ---- table text -----------------------------------------------------------------------------------------

/** A table as dmsetup reads it: one target a line, "start length type params"; blank and # lines skipped. */
export function parseTableText(verb: string, text: string): Target[] {
  const targets: Target[] = [];
  for (const raw of text.split('\n')) {
    const l = raw.trim();
    if (!l || l.startsWith('#')) continue;
    const m = /^(\d+)\s+(\d+)\s+(\S+)\s*(.*)$/.exec(l);
    if (!m) throw new UsageError(`${verb}: cannot read table line ${JSON.stringify(l)} (want "start length type params")`, verb);
    targets.push({ start: sectors(Number(m[1])), length: sectors(Number(m[2])), type: m[3], params: m[4] });
  }
  return targets;
}

/** --table TEXT, or a table file as dmsetup takes one, or stdin when neither is given. */
function tableOf(verb: string, p: Parsed, io: Io, fileArg: string | undefined): Target[] {
  const inline = str(p, 'table');
  if (inline !== undefined && fileArg !== undefined) throw new UsageError(`${verb}: give --table or a table file, not both`, verb);
  const text = inline ?? (fileArg !== undefined ? fs.readFileSync(fileArg, 'utf8') : io.readStdin());
  return parseTableText(verb, text);
}

// ---- iterating devices ----------------------------------------------------------------------------------

/**
 * The devices a read verb covers, as dmsetup: the named ones, or every device in the kernel's list order.
 * `prefix`: dmsetup puts "name: " before each line when it covers more than one device (or none was named).
 */
function eachDevice(dm: DeviceMapper, p: Parsed, io: Io, fn: (name: string, prefix: string) => string): boolean {
  if (p.positionals.length === 0) {
    const all = dm.listSync();
    if (all.length === 0) { io.out('No devices found\n'); return true; }
    for (const d of all) io.out(fn(d.name, `${d.name}: `));
    return true;
  }
  const many = p.positionals.length !== 1;
  for (const name of p.positionals) io.out(fn(name, many ? `${name}: ` : ''));
  return true;
}

function tableOrStatus(dm: DeviceMapper, p: Parsed, io: Io, table: boolean): void {
  const target = str(p, 'target');
  const q = { inactive: flag(p, 'inactive'), noflush: flag(p, 'noflush') };
  eachDevice(dm, p, io, (name, prefix) => {
    const targets = table ? dm.tableSync(name, q) : dm.statusSync(name, q);
    const shown = target === undefined ? targets : targets.filter((t) => t.type === target);
    if (targets.length === 0) return target === undefined ? `${prefix}\n` : '';
    return shown.map((t) => `${prefix}${targetLine(t)}\n`).join('');
  });
}

// ---- the verbs ------------------------------------------------------------------------------------------

const deviceArgs = '[<device>...]';

export const dmVerbs: Record<string, DmVerb> = {
  ls: {
    usage: 'ls [--target <target_type>] [--tree]',
    summary: 'list devices: name and (major:minor)',
    options: { target: { type: 'string' }, tree: { type: 'boolean' } },
    run(dm, p, io) {
      arity('ls', p, 0, 0, '');
      if (flag(p, 'tree')) { io.out(deviceTree(dm)); return; }
      const all = dm.listSync();
      if (all.length === 0) { io.out('No devices found\n'); return; }
      const target = str(p, 'target');
      for (const d of all) {
        if (target === undefined) io.out(`${d.name}\t(${d.dev.major}:${d.dev.minor})\n`);
        // dmsetup's ls --target reads each status and prints its own "(major, minor)" form.
        else if (dm.statusSync(d.name).some((t) => t.type === target)) io.out(`${d.name}\t(${d.dev.major}, ${d.dev.minor})\n`);
      }
    },
  },
  info: {
    usage: `info [-c|--columns [-o <fields>] [--noheadings] [--separator <s>]] ${deviceArgs}`,
    summary: `device state: long form, or columns with -c (fields: ${Object.keys(COLUMNS).join(',')})`,
    options: { columns: { type: 'boolean', short: 'c' }, options: { type: 'string', short: 'o' }, noheadings: { type: 'boolean' }, separator: { type: 'string' } },
    run(dm, p, io) {
      const columns = flag(p, 'columns') || str(p, 'options') !== undefined;
      const o = { fields: str(p, 'options'), headings: !flag(p, 'noheadings'), separator: str(p, 'separator') };
      if (columns) infoColumns([], o);  // bad fields are a usage error before any device is read
      const names = p.positionals.length ? p.positionals : dm.listSync().map((d) => d.name);
      if (p.positionals.length === 0 && names.length === 0) { io.out('No devices found\n'); return; }
      // Each device is read before anything is printed for -c: libdm buffers the report and sizes its columns.
      if (columns) {
        io.out(infoColumns(names.map((n) => dm.infoSync(n)), o));
        return;
      }
      for (const n of names) io.out(infoLong(dm.infoSync(n)));
    },
  },
  table: {
    usage: `table [--target <target_type>] [--inactive] ${deviceArgs}`,
    summary: 'the loaded table of each device',
    options: { target: { type: 'string' }, inactive: { type: 'boolean' } },
    run(dm, p, io) { tableOrStatus(dm, p, io, true); },
  },
  status: {
    usage: `status [--target <target_type>] [--inactive] [--noflush] ${deviceArgs}`,
    summary: 'the status line of each target',
    options: { target: { type: 'string' }, inactive: { type: 'boolean' }, noflush: { type: 'boolean' } },
    run(dm, p, io) { tableOrStatus(dm, p, io, false); },
  },
  deps: {
    usage: `deps [--inactive] ${deviceArgs}`,
    summary: 'the devices each device uses, as (major, minor)',
    options: { inactive: { type: 'boolean' } },
    run(dm, p, io) {
      eachDevice(dm, p, io, (name, prefix) => {
        const deps = dm.depsSync(name, { inactive: flag(p, 'inactive') });
        return `${prefix}${deps.length} dependencies\t:${deps.map((d) => ` (${d.major}, ${d.minor})`).join('')}\n`;
      });
    },
  },
  targets: {
    usage: 'targets',
    summary: 'the target types the kernel has, with versions',
    options: {},
    run(dm, p, io) {
      arity('targets', p, 0, 0, '');
      for (const t of dm.targetVersionsSync()) io.out(`${t.name.padEnd(16)} v${t.version.major}.${t.version.minor}.${t.version.patch}\n`);
    },
  },
  version: {
    usage: 'version',
    summary: 'this library\'s version and the kernel\'s dm interface version',
    options: {},
    run(dm, p, io) {
      arity('version', p, 0, 0, '');
      const v = dm.kernelVersionSync();
      // dmsetup prints libdevmapper's version on the first line; devmapper has no libdevmapper and says so.
      io.out(`Library version:   devmapper ${packageVersion()}\n`);
      io.out(`Driver version:    ${v.major}.${v.minor}.${v.patch}\n`);
    },
  },
  create: {
    usage: 'create <device> [-u|--uuid <uuid>] [-r|--readonly] [-n|--notable | --table <table> | <table_file>]',
    summary: 'create a device and load and resume its table (from --table, a file or stdin)',
    options: { uuid: { type: 'string', short: 'u' }, readonly: { type: 'boolean', short: 'r' }, notable: { type: 'boolean', short: 'n' }, table: { type: 'string' } },
    run(dm, p, io) {
      arity('create', p, 1, 2, 'device name');
      const [name, file] = p.positionals;
      const o = { uuid: str(p, 'uuid'), readOnly: flag(p, 'readonly') || undefined };
      if (flag(p, 'notable')) {
        if (str(p, 'table') !== undefined || file !== undefined) throw new UsageError('create: --notable takes no table', 'create');
        dm.createSync(name, o);
        return;
      }
      dm.createDeviceSync(name, tableOf('create', p, io, file), o);
    },
  },
  load: {
    usage: 'load <device> [-r|--readonly] [--table <table> | <table_file>]',
    summary: 'load a table into the inactive slot (from --table, a file or stdin)',
    options: { readonly: { type: 'boolean', short: 'r' }, table: { type: 'string' } },
    run(dm, p, io) {
      arity('load', p, 1, 2, 'device name');
      const [name, file] = p.positionals;
      dm.loadSync(name, tableOf('load', p, io, file), { readOnly: flag(p, 'readonly') });
    },
  },
  remove: {
    usage: 'remove [-f|--force] [--deferred] <device>...',
    summary: 'remove devices (--force: first load an error table, as dmsetup does)',
    options: { force: { type: 'boolean', short: 'f' }, deferred: { type: 'boolean' } },
    run(dm, p, io) {
      arity('remove', p, 1, Infinity, 'device name');
      for (const name of p.positionals) {
        if (flag(p, 'force')) forceError(dm, name);
        dm.removeSync(name, { deferred: flag(p, 'deferred') });
      }
    },
  },
  suspend: {
    usage: 'suspend [--noflush] [--nolockfs] <device>...',
    summary: 'suspend devices',
    options: { noflush: { type: 'boolean' }, nolockfs: { type: 'boolean' } },
    run(dm, p) {
      arity('suspend', p, 1, Infinity, 'device name');
      for (const name of p.positionals) dm.suspendSync(name, { noflush: flag(p, 'noflush'), skipLockfs: flag(p, 'nolockfs') });
    },
  },
  resume: {
    usage: 'resume <device>...',
    summary: 'resume devices (an inactive table becomes live)',
    options: {},
    run(dm, p) {
      arity('resume', p, 1, Infinity, 'device name');
      for (const name of p.positionals) dm.resumeSync(name);
    },
  },
  clear: {
    usage: 'clear <device>...',
    summary: 'drop the inactive table',
    options: {},
    run(dm, p) {
      arity('clear', p, 1, Infinity, 'device name');
      for (const name of p.positionals) dm.clearSync(name);
    },
  },
  rename: {
    usage: 'rename <device> [--setuuid] <new_name_or_uuid>',
    summary: 'rename a device, or set its uuid with --setuuid',
    options: { setuuid: { type: 'boolean' } },
    run(dm, p) {
      arity('rename', p, 2, 2, 'device name and new name');
      const [from, to] = p.positionals;
      if (flag(p, 'setuuid')) dm.setUuidSync(from, to);
      else dm.renameSync(from, to);
    },
  },
  message: {
    usage: 'message <device> <sector> <message>...',
    summary: 'send a message to a target; its answer, if any, on stdout',
    options: {},
    run(dm, p, io) {
      arity('message', p, 3, Infinity, 'device, sector and message');
      const [name, sector, ...words] = p.positionals;
      const answer = dm.messageSync(name, integerArg('message', sector, 'sector'), words.join(' '));
      // dmsetup: an answer is printed as it is, with a newline added when it lacks one.
      if (answer) io.out(answer.endsWith('\n') ? answer : `${answer}\n`);
    },
  },
  wait: {
    usage: 'wait <device> [<event_nr>] [--noflush]',
    summary: 'wait until the device\'s event number passes event_nr',
    options: { noflush: { type: 'boolean' } },
    run(dm, p) {
      arity('wait', p, 1, 2, 'device name');
      const [name, nr] = p.positionals;
      dm.waitSync(name, nr === undefined ? 0 : integerArg('wait', nr, 'event_nr'), { noflush: flag(p, 'noflush') });
    },
  },
  mknodes: {
    usage: 'mknodes [<device>...]',
    summary: 'make /dev/mapper nodes right for the devices (all when none named)',
    options: {},
    run(dm, p) {
      const names = p.positionals.length ? p.positionals : dm.listSync().map((d) => d.name);
      for (const name of names) dm.ensureNode(name, dm.infoIfExistsSync(name)?.dev);
    },
  },
};

/** dmsetup remove --force: replace the table with an error target of the same size so I/O fails at once. */
function forceError(dm: DeviceMapper, name: string): void {
  const info = dm.infoSync(name);
  if (!info.liveTable) return;
  const size = dm.tableSync(name).reduce((n, t) => Math.max(n, t.start + t.length), 0);
  if (size === 0) return;
  dm.loadSync(name, [{ start: sectors(0), length: sectors(size), type: 'error', params: '' }]);
  dm.resumeSync(name);
}

export function packageVersion(): string {
  // dist/lib/cli -> the package root holds package.json (source runs: lib/cli -> ../../).
  for (const rel of ['../../../package.json', '../../package.json']) {
    try { return (JSON.parse(fs.readFileSync(path.join(__dirname, rel), 'utf8')) as { version: string }).version; } catch { /* next */ }
  }
  return 'unknown';
}
