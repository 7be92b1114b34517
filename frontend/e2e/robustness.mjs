// Robustness and accessibility checks of the designer e2e (imported by e2e/designer.mjs):
// - `raceAndConflict(page, api)`: opens flow A with its GET delayed (page.route), switches to
//   flow B before A answers, edits B, lets A's late answer arrive, edits and saves: B must hold
//   B's graph and A must be untouched. Then a save based on a version someone else replaced
//   shows the conflict banner, and "Reload theirs" loads the server's version.
// - `axeCheck(page, name)`: evaluates axe-core (npm `axe-core`, not a CDN; through the DevTools
//   protocol, so the page's CSP stays in force) and collects the
//   serious/critical violations of the page; `axeReport()` fails if any page had one.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { BASE_URL, check, shot } from './lib.mjs';

const require = createRequire(import.meta.url);
const AXE = require.resolve('axe-core/axe.min.js');
const node = (id) => `.react-flow__node[data-id="${id}"]`;
const violations = [];

function flowDef(prefix, text) {
  return {
    nodes: [
      { id: `${prefix}_in`, type: 'input', position: { x: 0, y: 0 }, data: { params: {} } },
      { id: `${prefix}_text`, type: 'template', position: { x: 300, y: 0 }, data: { params: { template: text } } },
      { id: `${prefix}_out`, type: 'output', position: { x: 600, y: 0 }, data: { params: {} } },
    ],
    edges: [
      { id: 'e1', source: `${prefix}_in`, sourceHandle: 'out', target: `${prefix}_text`, targetHandle: 'in' },
      { id: 'e2', source: `${prefix}_text`, sourceHandle: 'out', target: `${prefix}_out`, targetHandle: 'in' },
    ],
  };
}

async function setLabel(page, nodeId, label) {
  await page.locator(node(nodeId)).click();
  await page.locator('[data-testid="config-panel"] input[aria-label="label"]').fill(label);
}

export async function raceAndConflict(page, api) {
  const a = await api('POST', '/api/v1/flows', { name: 'Race A (e2e)', definition: flowDef('a', 'from A') });
  const b = await api('POST', '/api/v1/flows', { name: 'Race B (e2e)', definition: flowDef('b', 'from B') });
  let releasedA = false;
  const slowA = async (route) => {
    if (route.request().method() !== 'GET') return route.continue();
    await new Promise((r) => setTimeout(r, 2500));
    await route.continue().catch(() => undefined); // the page may have aborted it: that is the point
    releasedA = true;
  };
  await page.route(`${BASE_URL}/api/v1/flows/${a.id}`, slowA);
  await page.goto(`${BASE_URL}/#/`);
  await page.evaluate((id) => (location.hash = `#/flows/${id}`), a.id);
  await page.waitForTimeout(200);
  await page.evaluate((id) => (location.hash = `#/flows/${id}`), b.id);
  await page.locator(node('b_text')).waitFor();
  await setLabel(page, 'b_text', 'edited before A answered');
  for (let i = 0; i < 50 && !releasedA; i++) await page.waitForTimeout(100);
  await page.waitForTimeout(500);
  check((await page.locator(node('a_text')).count()) === 0, "A's late answer did not replace B on the canvas");
  await setLabel(page, 'b_text', 'edited after A answered');
  await page.locator('[data-testid="save"]').click();
  await page.locator('[data-testid="save-state"].clean').waitFor();
  const savedB = await api('GET', `/api/v1/flows/${b.id}`);
  const ids = savedB.definition.nodes.map((n) => n.id).sort();
  check(JSON.stringify(ids) === JSON.stringify(['b_in', 'b_out', 'b_text']), `B holds B's nodes after the race (${ids})`);
  check(savedB.definition.nodes.find((n) => n.id === 'b_text').data.label === 'edited after A answered', 'B has the edit');
  check((await api('GET', `/api/v1/flows/${a.id}`)).version === 1, 'A untouched');
  await page.unroute(`${BASE_URL}/api/v1/flows/${a.id}`, slowA);

  // Someone else saves B (v3) while the canvas still holds v2: our save is refused with a choice.
  const theirs = flowDef('b', 'their text');
  await api('PUT', `/api/v1/flows/${b.id}`, { definition: theirs, base_version: savedB.version });
  await setLabel(page, 'b_text', 'my stale edit');
  await page.locator('[data-testid="save"]').click();
  await page.locator('[data-testid="save-conflict"]').waitFor();
  check((await page.locator('[data-testid="save-conflict"]').innerText()).includes(`v${savedB.version + 1}`), 'conflict names the newer version');
  check((await api('GET', `/api/v1/flows/${b.id}`)).definition.nodes[1].data.params.template === 'their text', 'their save kept');
  await shot(page, '02b-save-conflict');
  await axeCheck(page, 'editor with conflict banner');
  await page.locator('[data-testid="conflict-reload"]').click();
  await page.locator('[data-testid="save-conflict"]').waitFor({ state: 'detached' });
  const want = `v${savedB.version + 1}`;
  await page.waitForFunction((v) => document.querySelector('.toolbar .badge')?.textContent === v, want, { timeout: 10000 }).catch(() => undefined);
  check((await page.locator('.toolbar .badge').innerText()) === want, 'reloaded their version');
  await page.locator(node('b_text')).click();
  check((await page.locator('[data-testid="config-panel"] input[aria-label="label"]').inputValue()) === '', 'their version has no label of mine');
}

export async function axeCheck(page, name) {
  await page.waitForTimeout(300); // let lazy chunks and live regions settle
  // Evaluated through the DevTools protocol, not injected as a <script>: the designer's CSP
  // (script-src 'self') stays in force for the whole run and is exercised by it.
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(readFileSync(AXE, 'utf8'));
  const found = await page.evaluate(async () => {
    // eslint-disable-next-line no-undef
    const r = await axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  for (const v of found) violations.push({ page: name, ...v });
  console.log(`\n  axe ${name}: ${found.length} serious/critical violation(s)${found.length ? ': ' + found.map((v) => v.id).join(', ') : ''}`);
}

export function axeReport() {
  for (const v of violations) console.log(`  axe [${v.page}] ${v.impact} ${v.id}: ${v.help} @ ${v.nodes.join(' | ')}`);
  check(violations.length === 0, `no serious/critical axe violations (${violations.length} found)`);
}
