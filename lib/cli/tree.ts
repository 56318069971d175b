// `ls --tree`: dmsetup's device tree, built as libdevmapper's dm_tree builds it (libdm-deptree.c, _add_dev)
// so that the children come in the same order, and drawn as dmsetup draws it with its default options
// (device numbers, truncation at 80 columns when not on a terminal).
import type { DeviceMapper } from '../dm/device-mapper';
import type { DevNumber } from '../core/binding';

interface TreeNode { name: string; dev: DevNumber; uses: TreeNode[]; usedBy: TreeNode[] }

const ASCII = { last: '`-', branch: '|-', vert: '| ', empty: '  ' };
const UTF = { last: '\u2514\u2500', branch: '\u251c\u2500', vert: '\u2502 ', empty: '  ' };

/** dmsetup draws with UTF-8 symbols when the locale's codeset is UTF-8 (setlocale(LC_ALL, "")). */
function symbols(env: NodeJS.ProcessEnv) {
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG || '';
  return /\.utf-?8/i.test(locale) ? UTF : ASCII;
}

export function deviceTree(dm: DeviceMapper, env: NodeJS.ProcessEnv = process.env): string {
  const list = dm.listSync();
  if (list.length === 0) return 'No devices found\n';
  const root: TreeNode = { name: '', dev: { major: 0, minor: 0 }, uses: [], usedBy: [] };
  const nodes = new Map<string, TreeNode>();
  const dmDevs = new Map(list.map((d) => [`${d.dev.major}:${d.dev.minor}`, d.name]));
  const linked = (a: TreeNode, b: TreeNode) => a.uses.includes(b);
  const link = (a: TreeNode, b: TreeNode) => { if (!linked(a, b)) { a.uses.push(b); b.usedBy.push(a); } };
  const unlink = (a: TreeNode, b: TreeNode) => {
    const i = a.uses.indexOf(b); if (i >= 0) a.uses.splice(i, 1);
    const k = b.usedBy.indexOf(a); if (k >= 0) b.usedBy.splice(k, 1);
  };
  // dm_tree_node_num_children: a node linked to the root (top level, or bottom level inverted) counts none.
  const children = (n: TreeNode, inverted: boolean) => (inverted ? (linked(root, n) ? 0 : n.usedBy.length) : (linked(n, root) ? 0 : n.uses.length));
  const linkTree = (parent: TreeNode, child: TreeNode) => {
    if (parent === root) { if (children(child, true)) return; } else unlink(root, child);
    unlink(parent, root);
    link(parent, child);
  };
  const add = (parent: TreeNode, dev: DevNumber) => {
    const key = `${dev.major}:${dev.minor}`;
    let node = nodes.get(key);
    const isNew = !node;
    let deps: DevNumber[] = [];
    if (!node) {
      const name = dmDevs.get(key);
      // Not a dm device (a loop, a disk): a nameless leaf, as libdm's tree has it.
      if (name !== undefined) deps = dm.depsSync({ dev });
      node = { name: name ?? '', dev, uses: [], usedBy: [] };
      nodes.set(key, node);
    }
    linkTree(parent, node);
    if (!isNew) return;
    if (deps.length === 0) { link(node, root); return; }
    for (const d of deps) add(node, d);
  };
  for (const d of list) add(root, d.dev);

  const sym = symbols(env);
  const more: boolean[] = [];
  let out = '';
  const line = (text: string) => {
    // dmsetup cuts lines at 80 columns ("..." after the 80th) unless the 81st character is the last.
    const chars = [...text];
    out += (chars.length > 81 ? chars.slice(0, 80).join('') + '...' : text) + '\n';
  };
  const walk = (n: TreeNode, depth: number) => {
    n.uses.forEach((child, i) => {
      const last = i === n.uses.length - 1;
      more[depth] = !last;
      let prefix = '';
      for (let d = 0; d < depth; d++)
        prefix += ' ' + (d === depth - 1 ? (more[depth] ? sym.branch : sym.last) : (more[d + 1] ? sym.vert : sym.empty));
      line(`${prefix}${child.name} (${child.dev.major}:${child.dev.minor})`);
      if (children(child, false)) walk(child, depth + 1);
    });
  };
  walk(root, 0);
  return out;
}
