// End-to-end test of the Providers page against a real stack (run by tests/e2e/test_designer_e2e.py,
// which skips it while GET /api/v1/providers answers 404): an admin (E2E_EMAIL) sees Providers in
// the nav, adds a provider with a limit through the form, opens its edit form with the keyboard, a
// bad limit is refused next to its field (focus on it), Escape closes the form and gives the focus
// back, new limits are saved (checked through the API), the live figures refresh on their own,
// Delete asks first (dismiss keeps it, accept removes it). Then an editor (E2E_EDITOR_EMAIL) sees no
// Providers entry and a clear message at #/providers. axe-core runs over each state (zero
// serious/critical violations). Exits non-zero on the first failed check.
import { BASE_URL, EMAIL, PASSWORD, apiLogin, check, launch, shot, step } from './lib.mjs';
import { axeCheck, axeReport } from './robustness.mjs';

const EDITOR_EMAIL = process.env.E2E_EDITOR_EMAIL ?? '';
const EDITOR_PASSWORD = process.env.E2E_EDITOR_PASSWORD ?? '';

async function login(page, email, password) {
  await page.goto(`${BASE_URL}/#/login`);
  await page.locator('input[name="email"]').fill(email);
  await page.locator('input[name="password"]').fill(password);
  await page.locator('button[type="submit"]').click();
  await page.locator('.topbar').waitFor();
}

async function main() {
  check(EMAIL && PASSWORD && EDITOR_EMAIL && EDITOR_PASSWORD, 'E2E_EMAIL/E2E_PASSWORD (admin) and E2E_EDITOR_EMAIL/E2E_EDITOR_PASSWORD must be set');
  const api = await apiLogin();
  const { page, close } = await launch();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const baseUrl = `https://e2e-${Date.now()}.example.com/v1`;
  let row;
  let id;
  try {
    await step('admin opens Providers from the nav', async () => {
      await login(page, EMAIL, PASSWORD);
      const link = page.locator('.topnav a', { hasText: 'Providers' });
      check((await link.count()) === 1, 'admin sees Providers');
      await link.click();
      await page.locator('h1', { hasText: 'Providers' }).waitFor();
      await page.locator('[data-testid="providers"], .empty').first().waitFor();
      await axeCheck(page, 'providers');
    });

    await step('add a provider with a concurrency limit', async () => {
      await page.locator('[data-testid="provider-add"]').click();
      const form = page.locator('[data-testid="provider-create"]');
      await form.getByLabel('Base URL').fill(baseUrl);
      await form.getByLabel('Max concurrent calls').fill('4');
      await shot(page, '20-provider-create');
      await axeCheck(page, 'providers: create form');
      await form.getByRole('button', { name: 'Add provider' }).click();
      await form.waitFor({ state: 'detached' });
      row = page.locator('tr[data-provider-id]', { hasText: baseUrl });
      await row.waitFor();
      id = await row.getAttribute('data-provider-id');
      check((await row.innerText()).includes('max 4'), 'the row shows the limit');
    });

    await step('edit with the keyboard: a bad limit is refused next to its field, Escape closes', async () => {
      const edit = row.getByRole('button', { name: /^Edit limits of/ });
      await edit.focus();
      await page.keyboard.press('Enter');
      const form = page.locator('[data-testid="provider-edit"]');
      await form.waitFor();
      const rpm = form.getByLabel('Requests per minute');
      await rpm.fill('0');
      await rpm.press('Enter');
      await form.locator('[data-testid="error-rpm"]').waitFor();
      check((await rpm.getAttribute('aria-invalid')) === 'true', 'the field is marked invalid');
      check(await rpm.evaluate((el) => el === document.activeElement), 'the invalid field has the focus');
      await shot(page, '21-provider-edit-error');
      await axeCheck(page, 'providers: edit form with an error');
      await page.keyboard.press('Escape');
      await form.waitFor({ state: 'detached' });
      await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label')?.startsWith('Edit limits of'));
    });

    await step('save new limits', async () => {
      await row.getByRole('button', { name: /^Edit limits of/ }).click();
      const form = page.locator('[data-testid="provider-edit"]');
      await form.getByLabel('Requests per minute').fill('600');
      await form.getByLabel('Max concurrent calls').fill('');
      await form.getByRole('button', { name: 'Save limits' }).click();
      await form.waitFor({ state: 'detached' });
      const saved = await api('GET', `/api/v1/providers/${id}`);
      check(saved.rpm === 600 && saved.max_concurrency === null, `limits saved (${JSON.stringify(saved)})`);
      await page.waitForFunction((u) => [...document.querySelectorAll('tr[data-provider-id]')].some((r) => r.textContent.includes(u) && r.textContent.includes('of 600 / min')), baseUrl);
    });

    await step('live figures refresh on their own', async () => {
      const head = page.locator('.page-head p');
      const before = await head.innerText();
      await page.waitForFunction((b) => document.querySelector('.page-head p')?.textContent !== b, before, { timeout: 10000 });
      await shot(page, '22-providers');
    });

    await step('delete asks first', async () => {
      page.once('dialog', (d) => d.dismiss());
      await row.getByRole('button', { name: /^Delete provider/ }).click();
      await page.waitForTimeout(300);
      check((await row.count()) === 1, 'dismissing keeps the provider');
      page.once('dialog', (d) => d.accept());
      await row.getByRole('button', { name: /^Delete provider/ }).click();
      await row.waitFor({ state: 'detached' });
      const gone = await api('GET', `/api/v1/providers/${id}`).then(() => false, (err) => String(err).includes('-> 404'));
      check(gone, 'the provider is gone');
    });

    await step('an editor sees no Providers entry and a clear message', async () => {
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.locator('input[name="email"]').waitFor();
      await login(page, EDITOR_EMAIL, EDITOR_PASSWORD);
      check((await page.locator('.topnav a', { hasText: 'Providers' }).count()) === 0, 'editor sees no Providers');
      await page.goto(`${BASE_URL}/#/providers`);
      const denied = page.locator('[data-testid="providers-denied"]');
      await denied.waitFor();
      check((await denied.innerText()).includes('administrators'), 'the message says who may');
      await axeCheck(page, 'providers: not an admin');
    });

    check(consoleErrors.length === 0, `no uncaught page errors: ${consoleErrors.join(' | ')}`);
    axeReport();
    console.log('providers e2e: all checks passed');
  } catch (err) {
    await shot(page, 'zz-providers-failure').catch(() => undefined);
    throw err;
  } finally {
    await close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
