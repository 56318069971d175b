// The devmapper command on the host, without a kernel: argument parsing, usage errors (exit 2), help text,
// and the shape of errors. A verb that needs the kernel fails here opening /dev/mapper/control (ENODEV or,
// where device-mapper is loaded but we lack rights, another errno): exit 1 and the error as JSON.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { infoColumns, infoLong, parseTableText, targetLine } from '../../lib/cli/dm-verbs';
import { errorJson, UsageError } from '../../lib/cli/common';
import { DevmapperError } from '../../lib';
import type { DeviceInfo } from '../../lib';
import { childNode } from './emulation';

const CLI = path.join(__dirname, '../../bin/devmapper.js');
const run = (...args: string[]) => spawnSync(...childNode([CLI, ...args]), { encoding: 'utf8', input: '' });
const version = (require('../../../package.json') as { version: string }).version;

describe('usage errors exit 2 with a message on stderr and nothing on stdout', () => {
  test.each([
    [[]], [['bogus']], [['--bogus']], [['info', '--bogus']], [['table', '--target']], [['create']], [['remove']],
    [['rename', 'a']], [['message', 'a', '0']], [['message', 'a', 'x', 'create_thin', '1']], [['wait', 'a', 'b']],
    [['wait', 'a', '1', '2']], [['targets', 'x']], [['pool']], [['pool', 'bogus']], [['vol', 'create', 'p', 'v']],
    [['registry', 'dump']], [['create', 'x', '--notable', '--table', '0 8 zero']], [['create', 'x', '--table', 'zero']],
    [['info', '-c', '-o', 'name,nosuchfield']], [['ls', 'extra']],
  ])('%j', (args) => {
    const r = run(...args);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^devmapper: .+\nTry 'devmapper (\S+ )*--help'\.\n$/);
  });

  test('with --json the usage error is also a JSON object on stdout', () => {
    const r = run('pool', 'ls', '--json', '--frobnicate');
    expect(r.status).toBe(2);
    expect(JSON.parse(r.stdout)).toEqual({ error: { code: 'ERR_USAGE', message: expect.stringContaining('--frobnicate') } });
  });
});

describe('help and version', () => {
  test('--help and -h list every verb, exit 0', () => {
    for (const h of ['--help', '-h']) {
      const r = run(h);
      expect(r.status).toBe(0);
      for (const verb of ['ls', 'info', 'table', 'status', 'deps', 'targets', 'version', 'create', 'load', 'remove', 'suspend', 'resume',
        'clear', 'rename', 'message', 'wait', 'mknodes', 'pool create', 'pool destroy', 'vol snap', 'vol resize', 'registry dump'])
        expect(r.stdout).toMatch(new RegExp(`^  ${verb} `, 'm'));
    }
  });

  test.each([['info'], ['create'], ['pool', 'create'], ['vol', 'rm'], ['registry', 'dump'], ['message']])('%j --help prints its usage, needs no kernel', (...verb) => {
    const r = run(...verb, '--help');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: devmapper ${verb.join(' ')} `));
  });

  test('--version prints the package version', () => {
    expect(run('--version')).toMatchObject({ status: 0, stdout: `devmapper ${version}\n` });
  });
});

describe('operations fail with exit 1 and a typed error where there is no device-mapper', () => {
  test.each([[['ls']], [['info', 'x', '--json']], [['table']], [['version', '--json']], [['create', 'x', '--table', '0 8 zero', '--json']],
    [['pool', 'ls', 'p', '--json']], [['vol', 'create', 'p', 'v', '1M', '--json']]])('%j', (args) => {
    const r = run(...args);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^devmapper: \S/);
    expect(r.stderr).not.toMatch(/\n\s+at /);  // no stack trace for an operation that failed
    if (args.includes('--json')) {
      const e = JSON.parse(r.stdout).error;
      expect(typeof e.code).toBe('string');
      expect(e.message).toBe(r.stderr.replace(/^devmapper: /, '').trimEnd());
      expect(e.errno).toBeLessThan(0);
    } else {
      expect(r.stdout).toBe('');
    }
  });
});

const info = (o: Partial<DeviceInfo>): DeviceInfo => ({
  name: 'vol0', uuid: '', dev: { major: 254, minor: 3 }, openCount: 0, eventNr: 0, targetCount: 1, suspended: false, readOnly: false,
  liveTable: true, inactiveTable: false, deferredRemove: false, internalSuspend: false, ...o,
});

describe('dmsetup formats', () => {
  test('info -c: libdm aligned columns, headings left-aligned, numbers right, the last column padded', () => {
    expect(infoColumns([info({ uuid: 'U-1' }), info({ name: 'a-name-longer-than-16', dev: { major: 254, minor: 12 }, suspended: true, readOnly: true, inactiveTable: true })]))
      .toBe('Name                  Maj Min Stat Open Targ Event  UUID                            \n' +
            'vol0                  254   3 L--w    0    1      0 U-1                             \n' +
            'a-name-longer-than-16 254  12 LIsr    0    1      0                                 \n');
    expect(infoColumns([info({})], { fields: 'name,attr', headings: false })).toBe('vol0:L--w\n');
    expect(infoColumns([])).toBe('');
  });

  test('info long form', () => {
    expect(infoLong(info({ name: 'x-no-sysfs', dev: { major: 4095, minor: 1048575 }, uuid: 'U', readOnly: true, deferredRemove: true, liveTable: false, inactiveTable: true })))
      .toBe('Name:              x-no-sysfs\nState:             ACTIVE (READ-ONLY) (DEFERRED REMOVE)\nTables present:    INACTIVE\nOpen count:        0\n' +
            'Event number:      0\nMajor, minor:      4095, 1048575\nNumber of targets: 1\nUUID: U\n\n');
  });

  test('table lines keep the space before empty params; table text skips blank and # lines', () => {
    expect(targetLine({ start: 0, length: 8, type: 'zero', params: '' } as never)).toBe('0 8 zero ');
    expect(parseTableText('create', '# c\n\n0 8 zero\n8 8 linear 7:0 0\n')).toEqual([
      { start: 0, length: 8, type: 'zero', params: '' }, { start: 8, length: 8, type: 'linear', params: '7:0 0' }]);
    expect(() => parseTableText('create', '0 zero')).toThrow(UsageError);
  });

  test('errorJson carries every field of a DevmapperError', () => {
    const e = new DevmapperError('m', { code: 'EBUSY', errno: -16, syscall: 'ioctl', command: 'DM_DEV_REMOVE', device: 'd' });
    expect(errorJson(e)).toEqual({ error: { code: 'EBUSY', message: 'm', errno: -16, syscall: 'ioctl', command: 'DM_DEV_REMOVE', device: 'd' } });
  });
});
