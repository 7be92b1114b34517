// The run-following client (api/follow.ts) against a scripted fetch, with fake timers: it resumes
// with Last-Event-ID after a drop, backs off exponentially, stops at once on 401/403/404, ends
// quietly on abort, and a chat stream that drops resumes on the run's event log (run id from the
// stream's first `run` event / X-Run-Id) instead of guessing.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ApiError } from './http';
import { backoffMs, followRun, MAX_RETRIES, type ConnectionState } from './follow';
import type { RunEvent } from './types';

const enc = new TextEncoder();

/** A body that delivers `chunks` one read at a time, then closes or drops (errors) like a network. */
function sseBody(chunks: string[], opts: { error?: boolean } = {}): ReadableStream<Uint8Array> {
  const left = [...chunks];
  return new ReadableStream({
    pull(c) {
      const next = left.shift();
      if (next !== undefined) c.enqueue(enc.encode(next));
      else if (opts.error) c.error(new TypeError('network dropped'));
      else c.close();
    },
  });
}

const step = (seq: number) => `event: step\nid: ${seq}\ndata: ${JSON.stringify({ seq, kind: 'step', node_id: 'n', to_status: 'running' })}\n\n`;
const end = (seq: number, status = 'succeeded') => `event: end\nid: ${seq}\ndata: ${JSON.stringify({ status })}\n\n`;
const ok = (chunks: string[], headers: Record<string, string> = {}, error = false) =>
  new Response(sseBody(chunks, { error }), { status: 200, headers: { 'content-type': 'text/event-stream', ...headers } });
const problem = (status: number) =>
  new Response(JSON.stringify({ title: 'nope', status, detail: `status ${status}` }), { status, headers: { 'content-type': 'application/problem+json' } });

interface Call {
  url: string;
  method: string;
  headers: Record<string, string>;
}

function script(answers: (() => Response | Promise<Response>)[]) {
  const calls: Call[] = [];
  const fetchMock = vi.fn((url: string, init: RequestInit = {}) => {
    calls.push({ url, method: init.method ?? 'GET', headers: (init.headers ?? {}) as Record<string, string> });
    const next = answers.shift();
    if (!next) return Promise.reject(new TypeError('no more answers'));
    if (init.signal?.aborted) return Promise.reject(new DOMException('aborted', 'AbortError'));
    return Promise.resolve(next());
  });
  vi.stubGlobal('fetch', fetchMock);
  return calls;
}

function recorder() {
  const events: RunEvent[] = [];
  const states: ConnectionState[] = [];
  const runIds: string[] = [];
  return {
    events,
    states,
    runIds,
    h: { onEvent: (e: RunEvent) => events.push(e), onState: (s: ConnectionState) => states.push(s), onRunId: (id: string) => runIds.push(id) },
  };
}

beforeEach(() => vi.useFakeTimers());
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe('followRun', () => {
  it('resumes from the last event id after a dropped connection', async () => {
    const calls = script([() => ok([step(1), step(2)], {}, true), () => ok([step(3), end(3)])]);
    const r = recorder();
    const done = followRun({ kind: 'events', runId: 'r1' }, r.h, new AbortController().signal);
    await vi.advanceTimersByTimeAsync(backoffMs(1));
    await expect(done).resolves.toMatchObject({ run_id: 'r1', status: 'succeeded' });
    expect(calls).toHaveLength(2);
    expect(calls[0].headers['last-event-id']).toBeUndefined();
    expect(calls[1].headers['last-event-id']).toBe('2');
    expect(r.events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(r.states).toEqual(['connecting', 'live', 'reconnecting', 'live', 'ended']);
  });

  it('backs off exponentially and gives up after MAX_RETRIES failures in a row', async () => {
    const calls = script(Array.from({ length: MAX_RETRIES + 1 }, () => () => problem(503)));
    const r = recorder();
    const done = followRun({ kind: 'events', runId: 'r1' }, r.h, new AbortController().signal);
    const failed = expect(done).rejects.toBeInstanceOf(ApiError);
    // the 2nd attempt waits 250 ms, the 3rd 500 ms: nothing happens before its delay is over
    await vi.advanceTimersByTimeAsync(0);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(249);
    expect(calls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(499);
    expect(calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(calls).toHaveLength(3);
    await vi.advanceTimersByTimeAsync(60_000);
    await failed;
    expect(calls).toHaveLength(MAX_RETRIES + 1);
    expect(r.states.at(-1)).toBe('failed');
    expect([1, 2, 3, 4, 5, 6].map(backoffMs)).toEqual([250, 500, 1000, 2000, 4000, 5000]);
  });

  it.each([401, 403, 404])('stops at once on %i (no retry)', async (status) => {
    const calls = script([() => problem(status), () => ok([end(1)])]);
    const r = recorder();
    const done = followRun({ kind: 'events', runId: 'r1' }, r.h, new AbortController().signal);
    await expect(done).rejects.toMatchObject({ status });
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toHaveLength(1);
    expect(r.states).toEqual(['connecting', 'failed']);
  });

  it('abort (Stop) during a backoff ends quietly without another request', async () => {
    const calls = script([() => problem(502), () => ok([end(1)])]);
    const abort = new AbortController();
    const r = recorder();
    const done = followRun({ kind: 'events', runId: 'r1' }, r.h, abort.signal);
    await vi.advanceTimersByTimeAsync(10);
    abort.abort();
    await expect(done).resolves.toBeNull();
    await vi.advanceTimersByTimeAsync(30_000);
    expect(calls).toHaveLength(1);
    expect(r.states.at(-1)).toBe('stopped');
  });

  it('a dropped chat stream resumes on the event log of the run it named', async () => {
    const runEvent = `event: run\ndata: ${JSON.stringify({ run_id: 'run-9', events: '/api/v1/runs/run-9/events' })}\n\n`;
    const calls = script([() => ok([runEvent, step(1), step(2)], { 'x-run-id': 'run-9' }, true), () => ok([step(3), end(4)])]);
    const r = recorder();
    const done = followRun(
      { kind: 'chat', flowId: 'f1', inputValue: 'hi', idempotencyKey: 'k1' },
      r.h,
      new AbortController().signal,
    );
    await vi.advanceTimersByTimeAsync(backoffMs(1));
    await expect(done).resolves.toMatchObject({ run_id: 'run-9', status: 'succeeded' });
    expect(calls[0]).toMatchObject({ method: 'POST', url: '/api/v1/run/f1?stream=true' });
    expect(calls[0].headers['idempotency-key']).toBe('k1');
    expect(calls[1]).toMatchObject({ method: 'GET', url: '/api/v1/runs/run-9/events' });
    expect(calls[1].headers['last-event-id']).toBe('2');
    expect(r.runIds).toEqual(['run-9']);
    expect(r.events.map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('a chat stream that fails before naming its run repeats the POST with the same key', async () => {
    const calls = script([() => Promise.reject(new TypeError('offline')), () => ok([`event: end\ndata: {"run_id":"r2","status":"failed","outputs":null,"error":"x"}\n\n`])]);
    const r = recorder();
    const done = followRun({ kind: 'chat', flowId: 'f1', inputValue: 'hi', idempotencyKey: 'same' }, r.h, new AbortController().signal);
    await vi.advanceTimersByTimeAsync(backoffMs(1));
    await expect(done).resolves.toMatchObject({ run_id: 'r2', status: 'failed' });
    expect(calls.map((c) => [c.method, c.headers['idempotency-key']])).toEqual([
      ['POST', 'same'],
      ['POST', 'same'],
    ]);
  });
});

describe('followRun and the session', () => {
  it('a 401 signs the user out through the shared handler', async () => {
    vi.useRealTimers();
    const { setUnauthorizedHandler } = await import('./http');
    const signedOut = vi.fn();
    setUnauthorizedHandler(signedOut);
    script([() => problem(401)]);
    await expect(followRun({ kind: 'events', runId: 'r1' }, recorder().h, new AbortController().signal)).rejects.toMatchObject({ status: 401 });
    expect(signedOut).toHaveBeenCalledTimes(1);
    setUnauthorizedHandler(null);
  });
});
