// What changes when the unit suite runs under user-mode emulation (test/prebuilds.sh runs it in qemu-aarch64 with
// an arm64 Node, to load the arm64 prebuild):
// - a child Node cannot be started by exec'ing process.execPath (an arm64 binary the host kernel cannot run
//   without a binfmt_misc handler, which is the machine's setting, not the suite's), so DEVMAPPER_TEST_NODE
//   names the command instead, as a JSON array: the emulator, its arguments, the Node binary;
// - the fuzz tests run a fraction of their cases (DEVMAPPER_FUZZ_FACTOR, 0 < f <= 1): the emulated run is there
//   to show the arm64 build works, the full count runs natively;
// - tests' time bounds, which only catch hangs, stretch by DEVMAPPER_TEST_SLOWDOWN (a whole number >= 1).

function nodeCommandFromEnv(): string[] {
  const raw = process.env.DEVMAPPER_TEST_NODE;
  if (!raw) return [process.execPath];
  const words: unknown = JSON.parse(raw);
  if (!Array.isArray(words) || words.length === 0 || !words.every((w) => typeof w === 'string' && w !== ''))
    throw new Error(`DEVMAPPER_TEST_NODE must be a JSON array of words, not ${raw}`);
  return words as string[];
}

const NODE = nodeCommandFromEnv();

/** Whether child Nodes start through an emulator (DEVMAPPER_TEST_NODE names more than a Node binary). */
export const emulated = NODE.length > 1;

/** The file and arguments to spawn a child Node with `args` (its script and arguments), as this process runs. */
export function childNode(args: string[]): [string, string[]] {
  return [NODE[0], [...NODE.slice(1), ...args]];
}

// A number from the environment, `dflt` when unset; anything `ok` refuses stops the suite at once.
function envNumber(name: string, dflt: number, ok: (n: number) => boolean, what: string): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return dflt;
  const n = Number(raw);
  if (!ok(n)) throw new Error(`${name} must be ${what}, not ${raw}`);
  return n;
}

const FUZZ_FACTOR = envNumber('DEVMAPPER_FUZZ_FACTOR', 1, (f) => f > 0 && f <= 1, 'a number in (0, 1]');
const SLOWDOWN = envNumber('DEVMAPPER_TEST_SLOWDOWN', 1, (n) => Number.isSafeInteger(n) && n >= 1, 'a whole number >= 1');

/** How many cases a fuzz test runs, for its full count `n`: all of them, unless DEVMAPPER_FUZZ_FACTOR says less. */
export function fuzzRuns(n: number): number {
  return Math.max(1, Math.round(n * FUZZ_FACTOR));
}

/** A test's time bound `ms` (a bound on hangs, not a speed claim), stretched as the emulation needs. */
export function bound(ms: number): number {
  return ms * SLOWDOWN;
}
