// Start-up prefetch for deep links: App.tsx calls `prefetchFlow(id)` as soon as the bundle runs
// (in parallel with /api/auth/me and the editor chunk); EditorPage's `takeFlow(id)` consumes that
// promise once, or fetches normally. Cuts the request waterfall of opening a flow by a round trip.
import { flows } from '../api/endpoints';
import type { Flow } from '../api/types';

const pending = new Map<string, Promise<Flow>>();

export function prefetchFlow(id: string): void {
  if (!pending.has(id)) {
    const p = flows.get(id);
    p.catch(() => pending.delete(id));
    pending.set(id, p);
  }
}

/** The prefetched flow (not abortable: callers drop a stale answer) or a fresh, abortable GET. */
export function takeFlow(id: string, signal?: AbortSignal): Promise<Flow> {
  const p = pending.get(id);
  pending.delete(id);
  return p ?? flows.get(id, signal);
}
