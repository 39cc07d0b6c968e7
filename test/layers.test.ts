/**
 * The layering of src/ (docs/architecture.md, "Layers"), read from the import statements of
 * every source file: the top-level folders import each other without a cycle, no stage folder
 * imports another, and config/ imports nothing of the rest but the error registry.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(__dirname, '../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = path.join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports, type-only ones included, as files under src/ (without extension). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s+|\brequire\(\s*|\bimport\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]);
  return specs.map((s) => path.relative(SRC, path.resolve(path.dirname(file), s)));
}

/** "stages/dmarc/index" -> "stages"; "main" -> "main". */
const topOf = (rel: string) => rel.split(path.sep)[0].replace(/\.ts$/, '');

const edges = new Map<string, Set<string>>();
const files = sourceFiles(SRC);
for (const file of files) {
  const from = path.relative(SRC, file);
  for (const to of importsOf(file)) {
    if (topOf(from) === topOf(to)) continue;
    if (!edges.has(topOf(from))) edges.set(topOf(from), new Set());
    edges.get(topOf(from))!.add(topOf(to));
  }
}

function findCycle(): string[] | null {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    if (state.get(n) === 'done') return null;
    if (state.get(n) === 'open') return [...stack.slice(stack.indexOf(n)), n];
    state.set(n, 'open');
    stack.push(n);
    for (const m of edges.get(n) ?? []) {
      const c = visit(m);
      if (c) return c;
    }
    stack.pop();
    state.set(n, 'done');
    return null;
  };
  for (const n of edges.keys()) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

describe('the layers of src/', () => {
  it('reads enough of the tree to mean something', () => {
    expect(files.length).toBeGreaterThan(80);
    expect(edges.get('main')).toEqual(expect.objectContaining(new Set(['listener', 'stages'])));
  });

  it('has no cycle between top-level folders', () => {
    expect(findCycle()).toBeNull();
  });

  it('has no stage folder importing another (shared code lives in lib/)', () => {
    const crossings = files.flatMap((file) => {
      const [top, stage] = path.relative(SRC, file).split(path.sep);
      // stages/registry.ts lists every stage; the rule is for the stage folders.
      if (top !== 'stages' || stage.endsWith('.ts')) return [];
      return importsOf(file)
        .filter((to) => to.split(path.sep)[0] === 'stages' && to.split(path.sep).length > 2 && to.split(path.sep)[1] !== stage)
        .map((to) => `${path.relative(SRC, file)} -> ${to}`);
    });
    expect(crossings).toEqual([]);
  });

  it('keeps config/ generic: it imports nothing of postseal but the error registry', () => {
    expect([...(edges.get('config') ?? [])]).toEqual(['errors']);
  });
});
