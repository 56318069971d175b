// The devmapper command: dmsetup's verbs (dm-verbs.ts) and the thin verbs (thin-verbs.ts) on the public API.
// Exit status: 0 ok, 1 a failed operation, 2 a usage error. Errors: `devmapper: <message>` on stderr, and
// with --json also `{ "error": { code, message, errno, ... } }` on stdout.
import fs from 'node:fs';
import { DeviceMapper } from '../dm/device-mapper';
import { DevmapperError } from '../core/errors';
import { Io, UsageError, errorJson, json, parse } from './common';
import { dmVerbs, packageVersion } from './dm-verbs';
import { poolVerbs, registryVerbs, ThinVerb, volVerbs } from './thin-verbs';

const groups: Record<string, { summary: string; verbs: Record<string, ThinVerb> }> = {
  pool: { summary: 'thin pools', verbs: poolVerbs },
  vol: { summary: 'thin volumes and snapshots', verbs: volVerbs },
  registry: { summary: 'a pool\'s registry', verbs: registryVerbs },
};

export function toolHelp(): string {
  const w = 10;
  return 'Usage: devmapper <verb> [options] [arguments]\n' +
    '       devmapper --version | --help | <verb> --help\n\n' +
    'Device-mapper verbs (output as dmsetup\'s):\n' +
    Object.entries(dmVerbs).map(([n, v]) => `  ${n.padEnd(w)}${v.summary}\n`).join('') +
    '\nThin verbs (--json for JSON on stdout):\n' +
    Object.entries(groups).map(([g, { verbs }]) => Object.entries(verbs).map(([n, v]) => `  ${`${g} ${n}`.padEnd(w + 10)}${v.summary}\n`).join('')).join('') +
    '\nExit status: 0 ok, 1 the operation failed, 2 usage error.\n';
}

const verbHelp = (usage: string, summary: string) => `Usage: devmapper ${usage}\n\n${summary}\n`;

const defaultIo: Io = {
  out: (t) => { fs.writeSync(1, t); },
  err: (t) => { fs.writeSync(2, t); },
  readStdin: () => fs.readFileSync(0, 'utf8'),
};

/** Runs the command line `args` (no node, no script); returns the exit status. */
export function main(args: string[], io: Io = defaultIo): number {
  const wantsJson = args.includes('--json');
  let dm: DeviceMapper | undefined;
  try {
    const [verb, ...rest] = args;
    if (verb === undefined) throw new UsageError('no verb given');
    if (verb === '--help' || verb === '-h' || verb === 'help') { io.out(toolHelp()); return 0; }
    if (verb === '--version' || verb === '-V') { io.out(`devmapper ${packageVersion()}\n`); return 0; }
    if (verb.startsWith('-')) throw new UsageError(`unknown option ${verb}`);
    const group = groups[verb];
    if (group) {
      const [sub, ...subRest] = rest;
      if (sub === undefined || sub === '--help' || sub === '-h') {
        if (sub === undefined) throw new UsageError(`${verb}: no verb given (${Object.keys(group.verbs).join(', ')})`, verb);
        io.out(Object.values(group.verbs).map((v) => `Usage: devmapper ${v.usage}\n`).join('')); return 0;
      }
      const v = group.verbs[sub];
      if (!v) throw new UsageError(`${verb}: unknown verb ${JSON.stringify(sub)} (${Object.keys(group.verbs).join(', ')})`, verb);
      const p = parse(`${verb} ${sub}`, subRest, v.options);
      if (p.values.help) { io.out(verbHelp(v.usage, v.summary)); return 0; }
      v.run(p, io);
      return typeof process.exitCode === 'number' ? process.exitCode : 0;
    }
    const v = dmVerbs[verb];
    if (!v) throw new UsageError(`unknown verb ${JSON.stringify(verb)}`);
    // --json on a dmsetup verb changes only how a failure is reported (dmsetup's output has no JSON form).
    const p = parse(verb, rest, { json: { type: 'boolean' }, ...v.options });
    if (p.values.help) { io.out(verbHelp(v.usage, v.summary)); return 0; }
    dm = new DeviceMapper();
    v.run(dm, p, io);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`devmapper: ${e.message}\nTry 'devmapper ${e.verb ? `${e.verb} ` : ''}--help'.\n`);
      if (wantsJson) io.out(json(errorJson(e)));
      return 2;
    }
    if (e instanceof DevmapperError || isSystemError(e)) {
      io.err(`devmapper: ${(e as Error).message}\n`);
      if (wantsJson) io.out(json(errorJson(e)));
      return 1;
    }
    // Not a user's mistake: a bug or something unforeseen; the stack helps whoever reports it.
    io.err(`devmapper: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
    if (wantsJson) io.out(json(errorJson(e)));
    return 1;
  } finally {
    dm?.close();
  }
}

// Node's own errors from fs (a table file that is not there): their message is enough.
const isSystemError = (e: unknown): boolean => e instanceof Error && typeof (e as NodeJS.ErrnoException).code === 'string' && typeof (e as NodeJS.ErrnoException).syscall === 'string';
