// Benchmark: how long a 300-node flow takes to load and render in the designer.
// Creates a 300-node / 300-edge flow through the API (BASE_URL, E2E_EMAIL, E2E_PASSWORD), then in
// Debian's chromium (e2e/lib.mjs `launch`) measures, RUNS times each:
//  - cold: a full page load of #/flows/{id} (bundle, auth, catalogue, flow fetch, layout, paint)
//    until all 300 node cards are in the DOM and visible and every edge is drawn, read from
//    performance.now() (the page's own clock, from navigation start);
//  - warm: client-side navigation from the flow list to the flow (app already loaded).
// Prints one JSON line {"nodes":300,"cold_ms":{...},"warm_ms":{...},"goal_ms":1000,"within_goal":bool}.
// The goal (BENCH_GOAL_MS, default 1000 ms for the cold median) is reported, never enforced: a benchmark
// on a shared, noisy machine prints figures and exits 0; it fails only when it could not measure.
import { BASE_URL, apiLogin, launch } from '../e2e/lib.mjs';

const N = Number(process.env.BENCH_NODES ?? 300);
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const GOAL = Number(process.env.BENCH_GOAL_MS ?? process.env.BENCH_LIMIT_MS ?? 1000);

export function bigFlow(n) {
  const cols = 20;
  const rows = Math.ceil((n - 2) / cols);
  const nodes = [{ id: 'start', type: 'input', position: { x: 0, y: (rows * 110) / 2 }, data: { params: {} } }];
  const edges = [];
  let e = 0;
  for (let i = 0; i < n - 2; i++) {
    const col = Math.floor(i / rows);
    const row = i % rows;
    const id = `n${i}`;
    const template = i % 3 === 0;
    nodes.push({
      id,
      type: template ? 'template' : 'noop',
      position: { x: 260 * (col + 1), y: row * 110 },
      data: { params: template ? { template: `step ${i}: {{ inputs.input_value }}` } : {} },
    });
    const src = col === 0 ? 'start' : `n${i - rows}`;
    edges.push({ id: `e${++e}`, source: src, sourceHandle: 'out', target: id, targetHandle: 'in' });
  }
  nodes.push({ id: 'result', type: 'output', position: { x: 260 * (cols + 1), y: (rows * 110) / 2 }, data: { params: {} } });
  const lastCol = Math.floor((n - 3) / rows);
  for (let i = lastCol * rows; i < n - 2; i++) {
    edges.push({ id: `e${++e}`, source: `n${i}`, sourceHandle: 'out', target: 'result', targetHandle: 'in' });
  }
  return { nodes, edges };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function renderedAt(page, n, edgeCount) {
  return page.waitForFunction(
    ([count, edges]) => {
      const els = document.querySelectorAll('.react-flow__node');
      if (els.length < count) return false;
      if (document.querySelectorAll('.react-flow__edge path.react-flow__edge-path').length < edges) return false;
      // React Flow keeps a node `visibility: hidden` (inline) until it has been measured.
      for (const el of els) if (el.style.visibility === 'hidden') return false;
      return performance.now();
    },
    [n, edgeCount],
    { polling: 'raf', timeout: 30000 },
  );
}

async function main() {
  const api = await apiLogin();
  const flow = await api('POST', '/api/v1/flows', { name: `Bench ${N} nodes`, definition: bigFlow(N) });
  const { page, close } = await launch();
  try {
    const login = await page.request.post(`${BASE_URL}/api/auth/login`, {
      data: { email: process.env.E2E_EMAIL, password: process.env.E2E_PASSWORD },
    });
    if (!login.ok()) throw new Error(`login ${login.status()}`);
    const cold = [];
    const warm = [];
    for (let i = 0; i < RUNS; i++) {
      await page.goto('about:blank');
      await page.goto(`${BASE_URL}/#/flows/${flow.id}`);
      cold.push(Math.round(await (await renderedAt(page, N, flow.definition.edges.length)).jsonValue()));
      await page.goto(`${BASE_URL}/#/`);
      await page.locator('.flow-row').first().waitFor();
      const t0 = await page.evaluate(() => {
        const t = performance.now();
        location.hash = `#/flows/${document.querySelector('.flow-row')?.getAttribute('data-flow-id')}`;
        return t;
      });
      const t1 = await (await renderedAt(page, N, flow.definition.edges.length)).jsonValue();
      warm.push(Math.round(t1 - t0));
    }
    const out = {
      nodes: N,
      edges: flow.definition.edges.length,
      cold_ms: { median: median(cold), min: Math.min(...cold), max: Math.max(...cold), runs: cold },
      warm_ms: { median: median(warm), min: Math.min(...warm), max: Math.max(...warm), runs: warm },
      goal_ms: GOAL,
    };
    out.within_goal = out.cold_ms.median <= GOAL;
    console.log(JSON.stringify(out));
    await api('DELETE', `/api/v1/flows/${flow.id}`);
    if (!out.within_goal) {
      console.error(`note: cold median ${out.cold_ms.median} ms is over the ${GOAL} ms goal (reported, not enforced)`);
    }
  } finally {
    await close();
  }
}

if (process.argv[1]?.endsWith("render300.mjs")) main().catch((err) => {
  console.error(err);
  process.exit(1);
});
