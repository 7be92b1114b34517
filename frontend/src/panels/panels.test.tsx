// Component tests of the side panels with Testing Library and a scripted fetch: the playground
// never stays busy (a 403 while following ends it with the error shown), Stop aborts and cancels,
// chat history and batch progress survive a tab switch (unmount + mount), the batch dropzone is
// a keyboard button, and the notice region is an aria-live region.
import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { MemoryRouter } from 'react-router-dom';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Notices } from '../components/Notices';
import { useGraph } from '../stores/graph';
import { notifyError } from '../stores/notices';
import { usePanels } from '../stores/panels';
import { useRunView } from '../stores/runView';
import { BatchPanel } from './BatchPanel';
import { PlaygroundPanel } from './PlaygroundPanel';

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;
const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
const problem = (status: number, detail: string) =>
  new Response(JSON.stringify({ title: 'Forbidden', status, detail }), { status, headers: { 'content-type': 'application/problem+json' } });
const sse = (text: string) => new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });

let calls: { url: string; method: string }[] = [];
function serve(handler: Handler) {
  calls = [];
  vi.stubGlobal(
    'fetch',
    vi.fn((url: string, init: RequestInit = {}) => {
      calls.push({ url, method: init.method ?? 'GET' });
      return Promise.resolve(handler(url, init));
    }),
  );
}

const ensureSaved = () => Promise.resolve(true);
const playground = () =>
  render(
    <MemoryRouter>
      <PlaygroundPanel flowId="f1" ensureSaved={ensureSaved} canRun />
    </MemoryRouter>,
  );

beforeEach(() => {
  usePanels.setState({ byFlow: {} });
  useRunView.getState().clear();
  useGraph.getState().load({ nodes: [], edges: [] }, { flowId: 'f1', name: 'F', version: 3 });
});
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('PlaygroundPanel', () => {
  it('a 403 while following ends busy and shows the reason (no retry)', async () => {
    serve((url) => (url.endsWith('/runs') ? json({ id: 'run-1', status: 'queued' }, 202) : problem(403, 'you may not watch this run')));
    playground();
    fireEvent.click(screen.getByText('JSON inputs'));
    fireEvent.click(screen.getByTestId('start-run'));
    await screen.findByText('you may not watch this run');
    expect(screen.queryByTestId('pending')).toBeNull();
    expect((screen.getByTestId('start-run') as HTMLButtonElement).disabled).toBe(false);
    expect(calls.filter((c) => c.url.includes('/events'))).toHaveLength(1);
    expect(useRunView.getState().connection).toBe('failed');
  });

  it('a chat reply streams to the end and the history survives a tab switch', async () => {
    const body =
      'event: run\ndata: {"run_id":"r7","events":"/api/v1/runs/r7/events"}\n\n' +
      'event: token\ndata: {"text":"hel"}\n\n' +
      'event: end\nid: 4\ndata: {"run_id":"r7","status":"succeeded","outputs":{"text":"hello there"},"error":null}\n\n';
    serve(() => sse(body));
    const first = playground();
    fireEvent.change(screen.getByLabelText('chat message'), { target: { value: 'hi' } });
    fireEvent.click(screen.getByTestId('send'));
    await screen.findByText('hello there');
    expect(useRunView.getState().runId).toBe('r7');
    first.unmount(); // another side-panel tab
    playground();
    expect(screen.getByText('hi')).toBeTruthy();
    expect(screen.getByText('hello there')).toBeTruthy();
  });

  it('Stop aborts the follow and cancels the run', async () => {
    let release: (r: Response) => void = () => undefined;
    serve((url, init) => {
      if (url.endsWith('/runs')) return json({ id: 'run-2', status: 'queued' }, 202);
      if (url.endsWith('/cancel')) return json({ status: 'cancelled' });
      return new Promise<Response>((resolve, reject) => {
        release = resolve;
        init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')));
      });
    });
    playground();
    fireEvent.click(screen.getByText('JSON inputs'));
    fireEvent.click(screen.getByTestId('start-run'));
    const stop = await screen.findByTestId('stop-run');
    await waitFor(() => expect((stop as HTMLButtonElement).disabled).toBe(false));
    fireEvent.click(stop);
    await waitFor(() => expect(calls.some((c) => c.url.endsWith('/runs/run-2/cancel') && c.method === 'POST')).toBe(true));
    expect(screen.queryByTestId('pending')).toBeNull();
    expect(useRunView.getState().connection).toBe('stopped');
    release(sse(''));
  });
});

describe('BatchPanel', () => {
  it('the dropzone is a keyboard button that opens the file chooser', () => {
    serve(() => json({}));
    render(<BatchPanel flowId="f1" ensureSaved={ensureSaved} canRun />);
    const zone = screen.getByRole('button', { name: /Drop a \.jsonl \/ \.csv file/ });
    expect(zone.tabIndex).toBe(0);
    const input = screen.getByTestId('batch-file') as HTMLInputElement;
    const click = vi.spyOn(input, 'click');
    fireEvent.keyDown(zone, { key: 'Enter' });
    fireEvent.keyDown(zone, { key: ' ' });
    expect(click).toHaveBeenCalledTimes(2);
  });

  it('keeps the batch and its progress across a tab switch', async () => {
    serve(() => json({ id: 'b1', status: 'succeeded', total: 2, progress: 1, counts: { succeeded: 2, failed: 0, cancelled: 0, running: 0, waiting: 0, queued: 0 } }));
    usePanels.getState().patch('f1', { batchId: 'b1' });
    const first = render(<BatchPanel flowId="f1" ensureSaved={ensureSaved} canRun />);
    await screen.findByTestId('batch-progress');
    first.unmount();
    serve(() => new Promise<Response>(() => undefined)); // the poll does not answer this time
    render(<BatchPanel flowId="f1" ensureSaved={ensureSaved} canRun />);
    expect(screen.getByTestId('batch-progress').getAttribute('data-status')).toBe('succeeded');
  });
});

describe('Notices', () => {
  it('announces errors in an assertive live region', () => {
    render(<Notices />);
    act(() => {
      notifyError(new TypeError('Failed to fetch'), 'Save failed');
    });
    const alert = screen.getByRole('alert');
    expect(alert.getAttribute('aria-live')).toBe('assertive');
    expect(alert.textContent).toMatch(/Save failed: Network error/);
    expect(screen.getByRole('status').getAttribute('aria-live')).toBe('polite');
  });
});
