// Pure run-view logic (stores/runView.ts calls it; runState.test.ts covers it): fold a run's event
// log into each node's step state at a given point (`statesAt`), describe one event for the
// timeline (`describeEvent`), and read step timings (`stepTimings`). A node with several items
// (map fan-out) shows its most recent transition; `attempts` counts running transitions;
// `waitingItems` lists every waiting (node, map item) so any item can be signalled.
import type { RunEvent, Step, StepStatus } from '../api/types';

export interface NodeRunState {
  status: StepStatus;
  attempt: number;
  items: number;
}

export type NodeStates = Record<string, NodeRunState>;

/** States after applying events[0..upto] (inclusive); upto < 0 means none applied. */
export function statesAt(events: RunEvent[], upto: number, nodeIds: string[] = []): NodeStates {
  const out: NodeStates = {};
  for (const id of nodeIds) out[id] = { status: 'pending', attempt: 0, items: 0 };
  const items = new Map<string, Set<number>>();
  const last = Math.min(upto, events.length - 1);
  for (let i = 0; i <= last; i++) {
    const e = events[i];
    if (e.kind !== 'step' || !e.node_id || !e.to_status) continue;
    const set = items.get(e.node_id) ?? new Set<number>();
    set.add(e.item_index ?? 0);
    items.set(e.node_id, set);
    const prev = out[e.node_id];
    out[e.node_id] = {
      status: e.to_status as StepStatus,
      attempt: Math.max(prev?.attempt ?? 0, e.attempt ?? 0),
      items: set.size,
    };
  }
  return out;
}

/** The run status after events[0..upto]. */
export function runStatusAt(events: RunEvent[], upto: number): string {
  let status = 'queued';
  for (let i = 0; i <= Math.min(upto, events.length - 1); i++) {
    const e = events[i];
    if (e.kind === 'run' && e.to_status) status = e.to_status;
  }
  return status;
}

export function describeEvent(e: RunEvent): string {
  const item = e.item_index ? `[${e.item_index}]` : '';
  switch (e.kind) {
    case 'run':
      return `run ${e.from_status ?? 'new'} → ${e.to_status}`;
    case 'step': {
      const att = e.attempt && e.attempt > 1 ? ` (attempt ${e.attempt})` : '';
      return `${e.node_id}${item} ${e.from_status ?? 'copied'} → ${e.to_status}${att}`;
    }
    case 'signal':
      return `signal delivered to ${e.node_id}${item}`;
    default:
      return `${e.kind} ${e.node_id ?? ''}`.trim();
  }
}

function seconds(a: string | null, b: string | null): number | null {
  if (!a || !b) return null;
  return (new Date(b).getTime() - new Date(a).getTime()) / 1000;
}

export interface StepTimings {
  queued_s: number | null;
  ran_s: number | null;
  total_s: number | null;
}

export function stepTimings(s: Step): StepTimings {
  return {
    queued_s: seconds(s.ready_at, s.started_at),
    ran_s: seconds(s.started_at, s.finished_at),
    total_s: seconds(s.created_at, s.finished_at),
  };
}

export const STATUS_COLORS: Record<string, string> = {
  pending: '#94a3b8',
  ready: '#0ea5e9',
  running: '#6366f1',
  retrying: '#f59e0b',
  waiting: '#a855f7',
  succeeded: '#10b981',
  failed: '#ef4444',
  skipped: '#cbd5e1',
  cancelled: '#64748b',
  queued: '#0ea5e9',
};

/** The (node, item) pairs waiting after events[0..upto]: each can be answered by a signal. */
export function waitingItems(events: RunEvent[], upto: number): { node_id: string; item_index: number }[] {
  const last = new Map<string, { node_id: string; item_index: number; status: string }>();
  for (let i = 0; i <= Math.min(upto, events.length - 1); i++) {
    const e = events[i];
    if (e.kind !== 'step' || !e.node_id || !e.to_status) continue;
    const item = e.item_index ?? 0;
    last.set(`${e.node_id}\u0000${item}`, { node_id: e.node_id, item_index: item, status: e.to_status });
  }
  return [...last.values()].filter((w) => w.status === 'waiting').map(({ node_id, item_index }) => ({ node_id, item_index }));
}

/** Badge backgrounds under white text: each at least 4.5:1 (WCAG AA), unlike the ring colours. */
export const STATUS_BADGE: Record<string, string> = {
  pending: '#475569',
  ready: '#0369a1',
  running: '#4338ca',
  retrying: '#b45309',
  waiting: '#7e22ce',
  succeeded: '#047857',
  failed: '#b91c1c',
  skipped: '#475569',
  cancelled: '#475569',
  queued: '#0369a1',
};
