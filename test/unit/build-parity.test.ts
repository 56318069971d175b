// Two builds of one addon: node-gyp (binding.gyp) at install time, CMake (CMakeLists.txt, through cmake-js) for
// the prebuilds and the sanitizer build. They must compile the same sources with the same defines and flags,
// or a prebuild is not what a user who builds from source gets.
import fs from 'node:fs';
import path from 'node:path';

const root = path.join(__dirname, '..', '..', '..');

interface GypTarget { target_name: string; sources: string[]; defines?: string[]; cflags?: string[]; cflags_cc?: string[];
  conditions?: [string, { cflags?: string[]; ldflags?: string[] }][] }

function readGyp(): { variables: Record<string, string>; targets: GypTarget[] } {
  const text = fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8');
  // A Python literal: drop its comments (outside strings), then it reads as a JavaScript one.
  let out = '', quote = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) { out += c; if (c === '\\') out += text[++i]; else if (c === quote) quote = ''; continue; }
    if (c === '"' || c === "'") { quote = c; out += c; continue; }
    if (c === '#') { while (i < text.length && text[i] !== '\n') i++; out += '\n'; continue; }
    out += c;
  }
  const gyp = new Function(`return (${out});`)();
  const vars: Record<string, string> = {};
  for (const [k, v] of Object.entries(gyp.variables ?? {})) vars[k.replace(/%$/, '')] = String(v);
  const subst = (s: string) => s.replace(/<\((\w+)\)/g, (_, k: string) => vars[k]);
  for (const t of gyp.targets as GypTarget[]) t.sources = t.sources.map(subst);
  return { variables: vars, targets: gyp.targets };
}

function readCmake(): { sets: Record<string, string[]>; text: string } {
  const text = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8').replace(/#.*$/gm, '');
  const sets: Record<string, string[]> = {};
  for (const m of text.matchAll(/^\s*set\(\s*(\w+)\s+([^)]*)\)/gm)) {
    sets[m[1]] = m[2].split(/\s+/).filter(Boolean)
      .flatMap((w) => (/^\$\{\w+\}$/.test(w) ? sets[w.slice(2, -1)] ?? [w] : [w.replace(/\$\{(\w+)\}/g, (_, k: string) => (sets[k] ?? [''])[0])]));
  }
  return { sets, text };
}

const gyp = readGyp();
const cmake = readCmake();
const target = (name: string) => {
  const t = gyp.targets.find((x) => x.target_name === name);
  if (!t) throw new Error(`binding.gyp has no target ${name}`);
  return t;
};
const sorted = (a: string[]) => [...a].sort();

test('binding.gyp and CMakeLists.txt compile the same addon sources', () => {
  expect(sorted(cmake.sets.DEVMAPPER_SOURCES)).toEqual(sorted(target('devmapper').sources));
  // And every C++ file in native/ is one of them.
  const cc = fs.readdirSync(path.join(root, 'native')).filter((f) => f.endsWith('.cc')).map((f) => `native/${f}`);
  expect(sorted(cmake.sets.DEVMAPPER_SOURCES)).toEqual(sorted(cc));
});

test('binding.gyp and CMakeLists.txt compile the same LMDB sources (upstream, and the legacy reader)', () => {
  expect(sorted(cmake.sets.LMDB_SOURCES)).toEqual(sorted(target('lmdb').sources));
  expect(sorted(cmake.sets.LMDB_LEGACY_SOURCES)).toEqual(sorted(target('lmdb_legacy').sources));
  for (const f of [...cmake.sets.LMDB_SOURCES, ...cmake.sets.LMDB_LEGACY_SOURCES]) expect(fs.existsSync(path.join(root, f))).toBe(true);
  // Both builds rename the legacy library's symbols with the same force-included header.
  expect(target('lmdb_legacy').cflags).toEqual(expect.arrayContaining(['-include', 'lmdb_legacy_names.h']));
  expect(cmake.text).toMatch(/-include \$\{CMAKE_SOURCE_DIR\}\/\$\{LMDB_LEGACY_DIR\}\/lmdb_legacy_names\.h/);
});

test('binding.gyp and CMakeLists.txt define the same macros', () => {
  expect(sorted(cmake.sets.DEVMAPPER_DEFINES)).toEqual(sorted(target('devmapper').defines ?? []));
});

test("binding.gyp's compiler flags, the sanitizer build's among them, are CMakeLists.txt's", () => {
  const t = target('devmapper');
  const flags = new Set([...(t.cflags ?? []), ...(t.cflags_cc ?? []), ...target('lmdb').cflags ?? []]);
  for (const [cond, extra] of t.conditions ?? []) {
    if (cond.includes('devmapper_sanitize')) for (const f of [...(extra.cflags ?? []), ...(extra.ldflags ?? [])]) flags.add(f);
  }
  for (const f of flags) {
    if (f === '-std=c++17') expect(cmake.text).toMatch(/CXX_STANDARD 17\b/);
    else if (f === '-fPIC') expect(cmake.text).toMatch(/POSITION_INDEPENDENT_CODE ON/);
    else expect(cmake.text.includes(f) || Object.values(cmake.sets).some((v) => v.includes(f))).toBe(true);
  }
});
