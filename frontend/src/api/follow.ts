// THE run-following path of the designer. `followRun(source, handlers, signal)` follows one run
// to its end and reports a connection state (connecting / live / reconnecting / failed / ended):
// - source `events`: GET /api/v1/runs/{id}/events (SSE of the event log);
// - source `chat`: POST /api/v1/run/{flow}?stream=true with an Idempotency-Key; the API names
//   the run first (`X-Run-Id` header and a `run` event), so when that stream drops the follow
//   resumes on GET /runs/{id}/events with Last-Event-ID (before the run is known, the POST is
//   repeated with the same key, which the API answers with the same run).
// Transient failures (network, 5xx, 408/429, a stream closed before `end`) reconnect with
// exponential backoff (250 ms doubling, capped at 5 s, at most MAX_RETRIES in a row); a 4xx
// (401/403/404...) stops at once, and a 401 also signs the user out (http.ts's handler).
// Aborting the signal (Stop) ends the follow quietly.
// Resolves with the run's end {run_id, status, outputs?, error?} or null when aborted; rejects
// with the error that made it fail.
import { isAbort, isClientError } from './errors';
import { apiUrl, reportUnauthorized, toApiError } from './http';
import { readSse } from './sse';
import type { RunEvent } from './types';

export type ConnectionState = 'idle' | 'connecting' | 'live' | 'reconnecting' | 'failed' | 'ended' | 'stopped';

export type RunSource =
  | { kind: 'events'; runId: string }
  | { kind: 'chat'; flowId: string; inputValue: string; version?: number; idempotencyKey: string };

export interface RunEnd {
  run_id: string;
  status: string;
  outputs?: unknown;
  error?: unknown;
}

export interface FollowHandlers {
  onEvent: (e: RunEvent) => void;
  onToken?: (t: { node_id?: string; text: string }) => void;
  onRunId?: (runId: string) => void;
  onState?: (state: ConnectionState, detail?: string) => void;
}

export const MAX_RETRIES = 8;
export const backoffMs = (failures: number): number => Math.min(5000, 250 * 2 ** (failures - 1));

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });

export async function followRun(source: RunSource, h: FollowHandlers, signal: AbortSignal): Promise<RunEnd | null> {
  let runId = source.kind === 'events' ? source.runId : null;
  let lastId: string | null = null;
  let failures = 0;
  const state = (s: ConnectionState, detail?: string) => h.onState?.(s, detail);
  const learn = (id: string | null) => {
    if (id && id !== runId) {
      runId = id;
      h.onRunId?.(id);
    }
  };
  state('connecting');
  while (!signal.aborted) {
    let end: RunEnd | null = null;
    try {
      const res = await open(source, runId, lastId, signal);
      learn(res.headers.get('x-run-id'));
      state('live');
      await readSse(res, (m) => {
        if (m.id) lastId = m.id;
        const data: Record<string, unknown> = m.data ? (JSON.parse(m.data) as Record<string, unknown>) : {};
        if (m.event === 'run' && typeof data.run_id === 'string' && !('seq' in data)) learn(data.run_id);
        else if (m.event === 'token') h.onToken?.(data as { node_id?: string; text: string });
        else if (m.event === 'end') end = { run_id: runId ?? String(data.run_id ?? ''), ...data } as RunEnd;
        else h.onEvent(data as Partial<RunEvent> as RunEvent);
      });
      if (end) {
        state('ended');
        return end;
      }
      failures = 0; // the stream was healthy and just closed: reconnect at once
      throw new Error('the event stream closed before the run ended');
    } catch (err) {
      if (signal.aborted || isAbort(err)) break;
      if (isClientError(err) || ++failures > MAX_RETRIES) {
        state('failed', err instanceof Error ? err.message : String(err));
        throw err;
      }
      state('reconnecting');
      await sleep(backoffMs(failures), signal);
    }
  }
  state('stopped');
  return null;
}

async function open(source: RunSource, runId: string | null, lastId: string | null, signal: AbortSignal): Promise<Response> {
  const headers: Record<string, string> = { accept: 'text/event-stream' };
  let res: Response;
  if (runId) {
    if (lastId) headers['last-event-id'] = lastId;
    res = await fetch(apiUrl(`/api/v1/runs/${runId}/events`), { credentials: 'include', headers, signal });
  } else if (source.kind === 'chat') {
    const body = source.version ? { input_value: source.inputValue, version: source.version } : { input_value: source.inputValue };
    res = await fetch(apiUrl(`/api/v1/run/${encodeURIComponent(source.flowId)}?stream=true`), {
      method: 'POST',
      credentials: 'include',
      headers: { ...headers, 'content-type': 'application/json', 'idempotency-key': source.idempotencyKey },
      body: JSON.stringify(body),
      signal,
    });
  } else {
    throw new Error('no run to follow');
  }
  if (!res.ok) {
    if (res.status === 401) reportUnauthorized();
    throw await toApiError(res);
  }
  return res;
}
