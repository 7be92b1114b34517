// End-to-end test of the designer against a real stack (run by tests/e2e/test_designer_e2e.py):
// log in -> new flow -> drag a Template node from the palette, connect typed ports (a refused
// connection shows a hint) -> a 422 save pins the error on the node -> fix and save -> chat in the
// playground (SSE) -> import a slow flow, run it and SIGKILL the worker executing it (E2E_WORKER_PIDS)
// -> the run still finishes -> batch upload + results -> restore a version -> answer a waiting
// node, resume the failed run -> replay a run and step through its timeline -> fork from a node with
// edited inputs -> ops dashboard, deploy, versions. Also (e2e/robustness.mjs): the open-A-then-B
// load race and the save conflict banner, and axe-core over every page (zero serious/critical
// violations). Screenshots go to test-artifacts/.
// Exits non-zero on the first failed check.
import { BASE_URL, EMAIL, PASSWORD, apiLogin, check, launch, shot, step } from './lib.mjs';
import { axeCheck, axeReport, raceAndConflict } from './robustness.mjs';

const WORKER_PIDS = (process.env.E2E_WORKER_PIDS ?? '').split(',').filter(Boolean).map(Number);
const node = (id) => `.react-flow__node[data-id="${id}"]`;

async function connect(page, from, to) {
  const a = await page.locator(`${node(from)} .react-flow__handle.source`).first().boundingBox();
  const b = await page.locator(`${node(to)} .react-flow__handle.target`).first().boundingBox();
  await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
  await page.mouse.down();
  await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, { steps: 8 });
  await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2, { steps: 8 });
  await page.mouse.up();
}

async function setCode(page, field, text) {
  const editor = page.locator(`[data-field="${field}"] .cm-content`);
  await editor.click();
  await page.keyboard.press('Control+A');
  await page.keyboard.press('Backspace');
  await page.keyboard.type(text, { delay: 5 });
  await page.keyboard.press('Escape');
}

const SLOW_FLOW = {
  name: 'Slow hash (e2e)',
  description: 'CPU-heavy step to kill a worker under',
  definition: {
    nodes: [
      { id: 'start', type: 'input', position: { x: 0, y: 0 }, data: { params: {} } },
      { id: 'digest', type: 'hash', position: { x: 300, y: 0 }, data: { params: { text: '{{ inputs.input_value }}', rounds: 3000000 } } },
      { id: 'result', type: 'output', position: { x: 600, y: 0 }, data: { params: {} } },
    ],
    edges: [
      { id: 'e1', source: 'start', sourceHandle: 'out', target: 'digest', targetHandle: 'in' },
      { id: 'e2', source: 'digest', sourceHandle: 'out', target: 'result', targetHandle: 'in' },
    ],
  },
};

async function main() {
  check(EMAIL && PASSWORD, 'E2E_EMAIL and E2E_PASSWORD must be set');
  const api = await apiLogin();
  const { page, close } = await launch();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  try {
    await step('login page', async () => {
      await page.goto(`${BASE_URL}/#/login`);
      await page.locator('input[name="email"]').fill(EMAIL);
      await page.locator('input[name="password"]').fill('wrong-password');
      await page.locator('button[type="submit"]').click();
      await page.locator('.alert.error').waitFor();
      await shot(page, '01-login');
      await axeCheck(page, 'login');
      await page.locator('input[name="password"]').fill(PASSWORD);
      await page.locator('button[type="submit"]').click();
      await page.locator('.topbar').waitFor();
      check((await page.locator('.topnav a', { hasText: 'Ops' }).count()) === 1, 'editor sees Ops (role-aware nav)');
    });

    await step('open flow A, switch to B before A loads, save: B unchanged; a stale save conflicts', async () => {
      await raceAndConflict(page, api);
      await page.goto(`${BASE_URL}/#/`);
    });

    await step('create a flow', async () => {
      await page.locator('[data-testid="new-flow"]').click();
      await page.locator(node('start')).waitFor();
      await page.locator(node('result')).waitFor();
      await axeCheck(page, 'editor');
    });

    await step('drag a Template node from the palette', async () => {
      const canvas = await page.locator('[data-testid="canvas"]').boundingBox();
      await page.dragAndDrop('.palette-item[data-node-type="template"]', '[data-testid="canvas"] .react-flow__pane', {
        targetPosition: { x: canvas.width * 0.45, y: canvas.height * 0.7 },
      });
      await page.locator(node('template_1')).waitFor();
      await page.locator('[data-testid="config-panel"]').waitFor();
      await axeCheck(page, 'editor with node form');
    });

    await step('connect typed ports; a refused connection shows a hint', async () => {
      await connect(page, 'start', 'template_1');
      await connect(page, 'template_1', 'result');
      await page.waitForFunction(() => document.querySelectorAll('.react-flow__edge').length === 2);
      await connect(page, 'template_1', 'template_1');
      await page.locator('.canvas-hint').waitFor();
      check((await page.locator('.canvas-hint').innerText()).includes('itself'), 'self-connection hint');
      await page.locator('.canvas-hint').click();
      check((await page.locator('.react-flow__edge').count()) === 2, 'refused connection added no edge');
    });

    await step('server validation error is shown on the node', async () => {
      await page.locator(node('template_1')).click();
      await setCode(page, 'template', 'Hi {{ nope.text }}');
      await page.locator('[data-testid="save"]').click();
      await page.locator(`${node('template_1')} .fnode-error`).waitFor();
      check((await page.locator(`${node('template_1')} .fnode-error`).innerText()).includes('nope'), 'error names the unknown node');
      await shot(page, '02-validation-error');
    });

    await step('configure and save (new version)', async () => {
      await setCode(page, 'template', 'You said: {{ inputs.input_value }}');
      await page.locator('[data-testid="save"]').click();
      await page.locator('[data-testid="save-state"].clean').waitFor();
      check((await page.locator('.toolbar .badge').innerText()) === 'v2', 'save made version 2');
      await shot(page, '03-editor-saved');
    });

    let chatRunUrl = '';
    await step('chat in the playground (SSE) and see the output', async () => {
      await page.locator('[data-tab="run"]').click();
      await page.locator('input[aria-label="chat message"]').fill('hello');
      await page.locator('[data-testid="send"]').click();
      const bubble = page.locator('[data-testid="bubble-assistant"]').first();
      await bubble.waitFor({ timeout: 30000 });
      check((await bubble.innerText()).includes('You said: hello'), 'chat output');
      for (const id of ['start', 'template_1', 'result']) {
        check((await page.locator(node(id)).locator('.fnode').getAttribute('data-status')) === 'succeeded', `${id} coloured succeeded`);
      }
      chatRunUrl = await bubble.locator('a').getAttribute('href');
      check((await page.locator('[data-testid="connection"]').getAttribute('data-state')) === 'ended', 'the follow shows it ended');
      check((await page.locator('[data-testid="pending"]').count()) === 0, 'no pending bubble after the reply');
      await shot(page, '04-playground');
      await axeCheck(page, 'playground');
    });

    await step('deploy panel: publish, API key, snippets', async () => {
      await page.locator('[data-tab="deploy"]').click();
      await page.locator('[data-testid="publishing"] button', { hasText: 'Publish v2' }).click();
      await page.locator('[data-testid="publishing"]', { hasText: 'Published: v2' }).waitFor();
      await page.locator('input[aria-label="API key name"]').fill('e2e');
      await page.locator('button', { hasText: 'Create key' }).click();
      await page.locator('[data-testid="new-key"]').waitFor();
      check((await page.locator('[data-testid="snippet"]').innerText()).includes('/api/v1/run/'), 'snippet shows the endpoint');
      await shot(page, '05-deploy');
      await axeCheck(page, 'deploy');
      await page.locator('[data-tab="versions"]').click();
      await page.locator('.version-list li').nth(1).waitFor();
      await shot(page, '06-versions');
    });

    await step('batch: upload JSONL, watch progress, download results', async () => {
      await page.locator('[data-tab="batch"]').click();
      const lines = ['alpha', 'beta', 'gamma', 'delta', 'epsilon'].map((v) => JSON.stringify({ input_value: v })).join('\n');
      await page.locator('[data-testid="batch-file"]').setInputFiles({ name: 'inputs.jsonl', mimeType: 'application/x-ndjson', buffer: Buffer.from(lines) });
      await page.locator('[data-testid="batch-progress"][data-status="succeeded"]').waitFor({ timeout: 60000 });
      check((await page.locator('[data-testid="batch-progress"]').innerText()).includes('5/5'), 'all 5 items done');
      await shot(page, '06b-batch');
      await axeCheck(page, 'batch');
      const [download] = await Promise.all([page.waitForEvent('download'), page.locator('button', { hasText: 'Download results' }).click()]);
      const text = await (await download.createReadStream()).toArray().then((chunks) => Buffer.concat(chunks).toString());
      check(text.trim().split('\n').length === 5 && text.includes('You said: gamma'), 'results JSONL');
    });

    await step('restore an old version (a new version with its definition)', async () => {
      await page.locator('[data-tab="versions"]').click();
      await page.locator('.version-list li', { hasText: 'v1' }).locator('button', { hasText: 'Restore' }).click();
      await page.waitForFunction(() => document.querySelector('.toolbar .badge')?.textContent === 'v3');
      check((await page.locator('.react-flow__node').count()) === 2, 'v1 had two nodes');
    });

    await step('replay the chat run and step through its timeline', async () => {
      await page.goto(`${BASE_URL}/${chatRunUrl}`);
      await page.locator('[data-testid="timeline"]').waitFor();
      await page.waitForFunction(() => {
        const t = document.querySelector('[data-testid="tl-pos"]')?.textContent ?? '';
        const [a, b] = t.split('/').map(Number);
        return b > 5 && a === b;
      });
      await page.locator('button[aria-label="first"]').click();
      check((await page.locator(`${node('result')} .fnode`).getAttribute('data-status')) === 'pending', 'at the start every node is pending');
      for (let i = 0; i < 6; i++) await page.locator('[data-testid="tl-next"]').click();
      const mid = await page.locator(`${node('start')} .fnode`).getAttribute('data-status');
      check(mid !== 'pending', `start moved on after 6 transitions (${mid})`);
      check((await page.locator(`${node('result')} .fnode`).getAttribute('data-status')) === 'pending', 'result still pending mid-timeline');
      await page.locator(node('template_1')).click();
      await page.locator('[data-testid="step-template_1"]').waitFor();
      await shot(page, '07-replay-mid');
      await axeCheck(page, 'replay');
      await page.locator('button[aria-label="last"]').click();
      check((await page.locator('[data-testid="step-template_1"]').innerText()).includes('You said: hello'), 'inspector shows the output');
    });

    await step('fork from a node with edited inputs', async () => {
      await page.locator('[data-testid="fork-open"]').click();
      const ed = page.locator('.fork-form .cm-content');
      await ed.click();
      await page.keyboard.press('Control+A');
      await page.keyboard.type('{"input_value": "forked"}');
      await page.locator('[data-testid="fork-submit"]').click();
      await page.waitForFunction((old) => location.hash !== old && location.hash.startsWith('#/runs/'), `#${chatRunUrl.slice(1)}`);
      await page.locator('.toolbar .pill.st-succeeded').waitFor({ timeout: 30000 });
      await page.locator(node('result')).click();
      await page.locator('[data-testid="step-result"]').waitFor();
      await page.waitForFunction(() => document.querySelector('[data-testid="step-result"]')?.textContent?.includes('You said: forked'));
      check((await page.locator('.toolbar').innerText()).includes('fork of'), 'lineage shown');
      await shot(page, '08-fork');
    });

    await step('answer a waiting node, then resume the failed run', async () => {
      const flow = await api('POST', '/api/v1/flows', {
        name: 'Approval then flaky step (e2e)',
        definition: {
          nodes: [
            { id: 'start', type: 'input', position: { x: 0, y: 0 }, data: { params: {} } },
            { id: 'gate', type: 'wait_for_signal', position: { x: 280, y: 0 }, data: { params: {} } },
            { id: 'flaky', type: 'fail', position: { x: 560, y: 0 }, data: { params: { succeed_on_attempt: 2, message: 'first attempt fails' } } },
            { id: 'result', type: 'output', position: { x: 840, y: 0 }, data: { params: {} } },
          ],
          edges: [
            { id: 'e1', source: 'start', sourceHandle: 'out', target: 'gate', targetHandle: 'in' },
            { id: 'e2', source: 'gate', sourceHandle: 'out', target: 'flaky', targetHandle: 'in' },
            { id: 'e3', source: 'flaky', sourceHandle: 'out', target: 'result', targetHandle: 'in' },
          ],
        },
      });
      const run = await api('POST', `/api/v1/flows/${flow.id}/runs`, { inputs: { order: 42 } });
      await page.goto(`${BASE_URL}/#/runs/${run.id}`);
      await page.locator(`${node('gate')} .fnode[data-status="waiting"]`).waitFor({ timeout: 30000 });
      await page.locator('[data-testid="signal-box"]').waitFor();
      await shot(page, '09a-waiting-signal');
      await page.locator('[data-testid="signal-box"] button', { hasText: 'Answer gate' }).click();
      await page.locator('.toolbar .pill.st-failed').waitFor({ timeout: 30000 });
      await page.locator(node('flaky')).click();
      check((await page.locator('[data-testid="step-flaky"]').innerText()).includes('first attempt fails'), 'error shown');
      await shot(page, '09b-failed');
      await page.locator('[data-testid="resume"]').click();
      await page.locator('.toolbar .pill.st-succeeded').waitFor({ timeout: 30000 });
      const done = await api('GET', `/api/v1/runs/${run.id}`);
      check(done.steps.find((x) => x.node_id === 'flaky').attempt === 2, 'resumed step ran a second attempt');
    });

    let slowFlowId = '';
    await step('import a slow flow; kill the worker running it; the run finishes', async () => {
      await page.goto(`${BASE_URL}/#/`);
      await page.locator('[data-testid="import-file"]').setInputFiles({
        name: 'slow.flow.json',
        mimeType: 'application/json',
        buffer: Buffer.from(JSON.stringify(SLOW_FLOW)),
      });
      await page.waitForURL(/#\/flows\//);
      slowFlowId = page.url().split('/flows/')[1];
      await page.locator(node('digest')).waitFor();
      await page.locator('[data-tab="run"]').click();
      await page.locator('.seg button', { hasText: 'JSON inputs' }).click();
      await page.locator('[data-testid="start-run"]').click();
      let runId = null;
      for (let i = 0; i < 100 && !runId; i++) {
        const runs = await api('GET', `/api/v1/runs?flow_id=${slowFlowId}&limit=1`);
        const r = runs.items[0] && (await api('GET', `/api/v1/runs/${runs.items[0].id}`));
        if (r && r.steps.some((s) => s.node_id === 'digest' && s.status === 'running')) runId = r.id;
        else await new Promise((res) => setTimeout(res, 100));
      }
      check(runId, 'the hash step started');
      // The worker that holds the step's lease (steps.lease_owner -> processes.pid), from PostgreSQL.
      const { execFileSync } = await import('node:child_process');
      const sql = (q) => execFileSync('psql', [process.env.E2E_DATABASE_URL, '-Atc', q], { encoding: 'utf8' }).trim();
      const holder = () =>
        sql(`SELECT s.attempt || ' ' || p.pid FROM steps s JOIN processes p ON p.id = s.lease_owner
             WHERE s.run_id = '${runId}' AND s.node_id = 'digest' AND s.status = 'running'`);
      check(process.env.E2E_DATABASE_URL, 'E2E_DATABASE_URL given');
      let held = '';
      for (let i = 0; i < 100 && !held; i++) {
        held = holder();
        if (!held) await new Promise((res) => setTimeout(res, 100));
      }
      const [attemptBefore, pid] = held.split(' ').map(Number);
      check(WORKER_PIDS.includes(pid), `the lease holder ${pid} is one of the workers ${WORKER_PIDS}`);
      process.kill(pid, 'SIGKILL');
      console.log(`\n  killed worker pid ${pid} holding step "digest" (attempt ${attemptBefore}) of run ${runId}`);
      await page.locator(`${node('digest')} .fnode[data-status="running"], ${node('digest')} .fnode[data-status="succeeded"]`).first().waitFor();
      await shot(page, '09-worker-killed-running');
      const bubble = page.locator('[data-testid="bubble-assistant"]').first();
      await bubble.waitFor({ timeout: 90000 });
      check((await bubble.innerText()).includes('digest'), 'run finished with the hash output');
      const run = await api('GET', `/api/v1/runs/${runId}`);
      check(run.status === 'succeeded', `run succeeded (${run.status})`);
      const digest = run.steps.find((s) => s.node_id === 'digest');
      check(digest.attempt === attemptBefore + 1, `the killed step ran once more (attempt ${attemptBefore} -> ${digest.attempt})`);
      await shot(page, '10-worker-killed-finished');
    });

    await step('run history with filters', async () => {
      await page.goto(`${BASE_URL}/#/runs?flow_id=${slowFlowId}`);
      await page.locator('tr[data-run-id]').first().waitFor();
      await page.goto(`${BASE_URL}/#/runs`);
      await page.locator('tr[data-run-id]').nth(2).waitFor();
      await shot(page, '11-runs');
      await axeCheck(page, 'runs');
    });

    await step('ops dashboard', async () => {
      await page.goto(`${BASE_URL}/#/ops`);
      await page.locator('[data-testid="processes"] tbody tr').first().waitFor();
      await page.locator('.chart').waitFor();
      await page.waitForTimeout(3500);
      await shot(page, '12-ops');
      await axeCheck(page, 'ops');
    });

    await step('flow list with search', async () => {
      await page.goto(`${BASE_URL}/#/`);
      await page.locator('.flow-row').nth(1).waitFor();
      await shot(page, '13-flows');
      await axeCheck(page, 'flows');
      const before = await page.locator('.flow-row').count();
      await page.locator('input[aria-label="Search flows"]').fill('slow hash');
      await page.waitForFunction(
        (n) => {
          const rows = [...document.querySelectorAll('.flow-row')];
          return rows.length >= 1 && rows.length < n && rows.every((r) => /slow hash/i.test(r.textContent ?? ''));
        },
        before,
      );
    });

    check(consoleErrors.length === 0, `no uncaught page errors: ${consoleErrors.join(' | ')}`);
    axeReport();
    console.log('designer e2e: all checks passed');
  } catch (err) {
    await shot(page, 'zz-failure').catch(() => undefined);
    throw err;
  } finally {
    await close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
