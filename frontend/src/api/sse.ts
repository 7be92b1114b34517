// Server-Sent Events over fetch (EventSource cannot POST nor set Last-Event-ID on a first
// connect): `SseParser.push(chunk)` turns text chunks into {event, data, id} messages (pure, unit
// tested); `readSse(response, onMessage)` pumps a ReadableStream through it. `streamChatRun()`
// posts to /api/v1/run/{flow}?stream=true; `followRunEvents()` GETs /api/v1/runs/{id}/events,
// replaying from Last-Event-ID and reconnecting after a dropped connection until `end`.
import { apiUrl, toApiError } from './http';
import type { RunEvent, RunResult } from './types';

export interface SseMessage {
  event: string;
  data: string;
  id: string | null;
}

export class SseParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];
  private id: string | null = null;

  push(chunk: string): SseMessage[] {
    this.buffer += chunk.replace(/\r\n?/g, '\n');
    const out: SseMessage[] = [];
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line === '') {
        if (this.data.length > 0) {
          out.push({ event: this.event || 'message', data: this.data.join('\n'), id: this.id });
        }
        this.event = '';
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue; // comment / keepalive
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
      else if (field === 'id') this.id = value;
    }
    return out;
  }
}

export async function readSse(res: Response, onMessage: (m: SseMessage) => void): Promise<void> {
  if (!res.body) throw new Error('no response body to stream');
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    for (const m of parser.push(decoder.decode(value, { stream: true }))) onMessage(m);
  }
}

export interface RunStreamHandlers {
  onEvent: (e: RunEvent) => void;
  onEnd: (result: RunResult) => void;
}

export async function streamChatRun(
  flowId: string,
  inputValue: string,
  handlers: RunStreamHandlers,
  signal?: AbortSignal,
  version?: number,
): Promise<void> {
  const res = await fetch(apiUrl(`/api/v1/run/${flowId}?stream=true`), {
    method: 'POST',
    credentials: 'include',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(version ? { input_value: inputValue, version } : { input_value: inputValue }),
    signal,
  });
  if (!res.ok) throw await toApiError(res);
  await readSse(res, (m) => {
    if (m.event === 'end') handlers.onEnd(JSON.parse(m.data) as RunResult);
    else handlers.onEvent(JSON.parse(m.data) as RunEvent);
  });
}

/** Follows a run's event log until `end`; resumes after network drops from the last seen id. */
export async function followRunEvents(
  runId: string,
  onEvent: (e: RunEvent) => void,
  signal: AbortSignal,
  onEnd?: (status: string) => void,
): Promise<void> {
  let lastId: string | null = null;
  let failures = 0;
  while (!signal.aborted) {
    try {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (lastId) headers['last-event-id'] = lastId;
      const res = await fetch(apiUrl(`/api/v1/runs/${runId}/events`), {
        credentials: 'include',
        headers,
        signal,
      });
      if (!res.ok) throw await toApiError(res);
      let ended = false;
      await readSse(res, (m) => {
        if (m.id) lastId = m.id;
        if (m.event === 'end') {
          ended = true;
          onEnd?.((JSON.parse(m.data) as { status: string }).status);
        } else onEvent(JSON.parse(m.data) as RunEvent);
      });
      if (ended) return;
      failures = 0;
    } catch (err) {
      if (signal.aborted) return;
      if ((err as { status?: number }).status === 404 || ++failures > 20) throw err;
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** failures)));
    }
  }
}
