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

function fuzzFactorFromEnv(): number {
  const raw = process.env.DEVMAPPER_FUZZ_FACTOR;
  if (raw === undefined || raw === '') return 1;
  const f = Number(raw);
  if (!(f > 0 && f <= 1)) throw new Error(`DEVMAPPER_FUZZ_FACTOR must be a number in (0, 1], not ${raw}`);
  return f;
}

const FUZZ_FACTOR = fuzzFactorFromEnv();

/** How many cases a fuzz test runs, for its full count `n`: all of them, unless DEVMAPPER_FUZZ_FACTOR says less. */
export function fuzzRuns(n: number): number {
  return Math.max(1, Math.round(n * FUZZ_FACTOR));
}

function slowdownFromEnv(): number {
  const raw = process.env.DEVMAPPER_TEST_SLOWDOWN;
  if (raw === undefined || raw === '') return 1;
  const n = Number(raw);
  if (!(Number.isSafeInteger(n) && n >= 1)) throw new Error(`DEVMAPPER_TEST_SLOWDOWN must be a whole number >= 1, not ${raw}`);
  return n;
}

const SLOWDOWN = slowdownFromEnv();

/** A test's time bound `ms` (a bound on hangs, not a speed claim), stretched as the emulation needs. */
export function bound(ms: number): number {
  return ms * SLOWDOWN;
}
