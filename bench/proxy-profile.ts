// proxy-profile: the top frames of a V8 CPU profile (`node --cpu-prof`), by self time and by inclusive time per
// source file, as bench/proxy prints them for our sidecars.
import fs from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** ProfileSummary is a profile's busy time (ms, idle excluded) and its top frames with their share of it. */
export interface ProfileSummary {
  busyMs: number;
  self: { frame: string; share: number }[];
  files: { file: string; share: number }[];
}

function frameName(n: ProfileNode): string {
  const file = n.callFrame.url.split('/').slice(-2).join('/');
  return `${n.callFrame.functionName || '(anonymous)'} ${file ? `${file}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
}

/** summarizeProfile reads a `.cpuprofile` and returns its `top` frames by self time and files by inclusive time. */
export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const p = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const time = new Map<number, number>();
  p.samples.forEach((s, i) => time.set(s, (time.get(s) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const self = new Map<string, number>();
  const files = new Map<string, number>();
  let busy = 0;
  for (const [id, us] of time) {
    const n = byId.get(id);
    if (!n || n.callFrame.functionName === '(idle)') continue;
    busy += us;
    const name = frameName(n);
    self.set(name, (self.get(name) ?? 0) + us);
    const seen = new Set<string>();
    for (let x: number | undefined = id; x !== undefined; x = parent.get(x)) {
      const url = byId.get(x)?.callFrame.url ?? '';
      const f = url.includes('node_modules')
        ? url.replace(/.*node_modules\/(\.pnpm\/)?([^/]+).*/, '$2')
        : url.split('/').pop();
      if (!f || seen.has(f)) continue;
      seen.add(f);
      files.set(f, (files.get(f) ?? 0) + us);
    }
  }
  const rank = (m: Map<string, number>): [string, number][] =>
    [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return {
    busyMs: busy / 1000,
    self: rank(self).map(([frame, us]) => ({ frame, share: us / busy })),
    files: rank(files).map(([file, us]) => ({ file, share: us / busy })),
  };
}
