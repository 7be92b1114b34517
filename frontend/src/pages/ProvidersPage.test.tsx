// Component tests of the Providers page against a scripted fetch: only admins see the nav entry and
// the page (a non-admin, or an API answering 403, gets the reason; lib/poll.test.ts covers the
// polling itself), rows show live usage, the edit form refuses bad limits next to the field before
// sending, shows a 422's field errors next to their fields and patches only what changed, the
// create form posts the chosen secret's name, a 409 is shown, and Delete asks first.
import { cleanup, fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Provider, User } from '../api/types';
import { LIMIT_ERROR } from '../lib/providers';
import { provider } from '../lib/testProvider';
import { useAuth } from '../stores/auth';
import { Layout } from './Layout';
import { FORBIDDEN_TEXT, ProvidersPage } from './ProvidersPage';

type Call = { url: string; method: string; body: unknown };
type Handler = (c: Call) => Response;
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const problem = (status: number, detail: string, errors?: { path: string; reason: string }[]) =>
  new Response(JSON.stringify({ title: 'Problem', status, detail, errors }), { status, headers: { 'content-type': 'application/problem+json' } });

let calls: Call[] = [];
function serve(handler: Handler) {
  calls = [];
  vi.stubGlobal(
    'fetch',
    vi.fn((url: string, init: RequestInit = {}) => {
      const c = { url, method: init.method ?? 'GET', body: init.body ? JSON.parse(String(init.body)) : undefined };
      calls.push(c);
      return Promise.resolve(handler(c));
    }),
  );
}
const sent = (method: string) => calls.filter((c) => c.method === method);

function signIn(roles: string[]) {
  const permissions = roles.includes('admin') ? ['ops:read', 'users:admin'] : ['ops:read'];
  const user: User = { id: 'u1', email: 'a@example.com', name: 'A', roles, permissions, scope: 'full' };
  useAuth.setState({ user, status: 'authed' });
}

const busy = provider({ id: 'p1', label: 'prod', max_concurrency: 16, rpm: 600, in_flight: 3, requests_last_minute: 300, throttled_total: 4, last_throttled_at: new Date().toISOString(), parked: 2 });

/** The API of one admin: the providers in `db.list` (the writes keep it true), the secrets, and
 * `write` answering POST/PATCH/DELETE. */
function api(db: { list: Provider[] }, write: Handler = () => json({})) {
  serve((c) => {
    if (c.url === '/api/v1/secrets') return json([{ name: 'OPENAI_KEY', created_at: '', updated_at: '' }]);
    if (c.url === '/api/v1/providers' && c.method === 'GET') return json(db.list);
    return write(c);
  });
}

const page = () =>
  render(
    <MemoryRouter>
      <ProvidersPage />
    </MemoryRouter>,
  );

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
  useAuth.setState({ user: null, status: 'anon' });
});

describe('ProvidersPage', () => {
  it('shows the nav entry to admins only', () => {
    signIn(['editor']);
    const { unmount } = render(<MemoryRouter><Layout /></MemoryRouter>);
    expect(screen.queryByRole('link', { name: 'Providers' })).toBeNull();
    unmount();
    signIn(['admin']);
    render(<MemoryRouter><Layout /></MemoryRouter>);
    expect(screen.getByRole('link', { name: 'Providers' })).toBeTruthy();
  });

  it('tells a non-admin why, without asking the API', () => {
    serve(() => json([]));
    signIn(['editor']);
    page();
    expect(screen.getByTestId('providers-denied').textContent).toBe(FORBIDDEN_TEXT);
    expect(calls).toHaveLength(0);
  });

  it('shows a 403 from the API as the same clear message', async () => {
    serve(() => problem(403, 'admins only'));
    signIn(['admin']);
    page();
    expect((await screen.findByTestId('providers-denied')).textContent).toBe(FORBIDDEN_TEXT);
  });

  it('draws live usage against the limits', async () => {
    api({ list: [busy, provider({ id: 'p2', base_url: 'http://127.0.0.1:9000/v1', key_fingerprint: null })] });
    signIn(['admin']);
    page();
    const row = within(await screen.findByTestId('providers')).getAllByRole('row')[1];
    expect(row.textContent).toContain('3 in flight · effective 8 · max 16');
    expect(row.textContent).toContain('300 of 600 / min');
    expect(row.textContent).toContain('0 / min'); // tokens: no TPM limit
    expect(row.textContent).toContain('last just now');
    expect(screen.getByText('127.0.0.1:9000')).toBeTruthy(); // no label: the host names it
    expect(screen.getByText('no key')).toBeTruthy();
  });

  it('edits limits: bad values stay in the form, a 422 lands next to its field, only changes are sent', async () => {
    const db = { list: [busy] };
    let answer: Response = problem(422, 'bad', [{ path: 'body.tpm', reason: 'too large for this provider' }]);
    api(db, () => answer);
    signIn(['admin']);
    page();
    fireEvent.click(await screen.findByRole('button', { name: 'Edit limits of prod' }));
    const form = screen.getByTestId('provider-edit');
    const rpm = within(form).getByLabelText('Requests per minute');
    fireEvent.change(rpm, { target: { value: '0' } });
    fireEvent.submit(form);
    const rpmError = await within(form).findByTestId('error-rpm');
    expect(rpmError.textContent).toBe(LIMIT_ERROR);
    expect(rpm.getAttribute('aria-invalid')).toBe('true');
    expect(rpm.getAttribute('aria-describedby')).toContain(rpmError.id);
    expect(document.activeElement).toBe(rpm);
    expect(sent('PATCH')).toHaveLength(0);

    fireEvent.change(rpm, { target: { value: '1200' } });
    fireEvent.change(within(form).getByLabelText('Tokens per minute'), { target: { value: '999999999' } });
    fireEvent.submit(form);
    expect((await within(form).findByTestId('error-tpm')).textContent).toBe('too large for this provider');
    expect(sent('PATCH')[0].body).toEqual({ rpm: 1200, tpm: 999999999 });

    db.list = [{ ...busy, rpm: 1200, tpm: null, max_concurrency: null }];
    answer = json(db.list[0]);
    fireEvent.change(within(form).getByLabelText('Tokens per minute'), { target: { value: '' } });
    fireEvent.change(within(form).getByLabelText('Max concurrent calls'), { target: { value: '' } });
    fireEvent.submit(form);
    await waitFor(() => expect(screen.queryByTestId('provider-edit')).toBeNull());
    expect(sent('PATCH')[1]).toMatchObject({ url: '/api/v1/providers/p1', body: { rpm: 1200, max_concurrency: null } });
    expect(screen.getByTestId('providers').textContent).toContain('effective 8 · no max');
  });

  it('adds a provider with a secret by name and shows a 409', async () => {
    const db = { list: [] as Provider[] };
    let answer: Response = problem(409, 'this provider already exists');
    api(db, () => answer);
    signIn(['admin']);
    page();
    await screen.findByText(/No providers yet/);
    fireEvent.click(screen.getByTestId('provider-add'));
    const form = screen.getByTestId('provider-create');
    fireEvent.submit(form);
    expect((await within(form).findByTestId('error-base_url')).textContent).toBe('required');
    fireEvent.change(within(form).getByLabelText(/Base URL/), { target: { value: 'https://api.example.com/v1' } });
    await within(form).findByRole('option', { name: 'OPENAI_KEY' });
    fireEvent.change(within(form).getByLabelText('API key (secret)'), { target: { value: 'OPENAI_KEY' } });
    fireEvent.change(within(form).getByLabelText('Max concurrent calls'), { target: { value: '64' } });
    fireEvent.submit(form);
    expect((await within(form).findByRole('alert')).textContent).toContain('this provider already exists');
    expect(sent('POST')[0].body).toEqual({ base_url: 'https://api.example.com/v1', api_key_secret: 'OPENAI_KEY', max_concurrency: 64, rpm: null, tpm: null });

    db.list = [provider({ id: 'p9', label: null, max_concurrency: 64 })];
    answer = json(db.list[0], 201);
    fireEvent.submit(form);
    await waitFor(() => expect(screen.queryByTestId('provider-create')).toBeNull());
    expect(screen.getByTestId('providers').textContent).toContain('max 64');
  });

  it('deletes only after the confirmation', async () => {
    const db = { list: [busy] };
    api(db, () => {
      db.list = [];
      return new Response(null, { status: 204 });
    });
    signIn(['admin']);
    page();
    const del = await screen.findByRole('button', { name: 'Delete provider prod' });
    vi.stubGlobal('confirm', vi.fn(() => false));
    fireEvent.click(del);
    expect(sent('DELETE')).toHaveLength(0);
    vi.stubGlobal('confirm', vi.fn(() => true));
    fireEvent.click(del);
    await screen.findByText(/No providers yet/);
    expect(sent('DELETE')[0].url).toBe('/api/v1/providers/p1');
  });
});
