// Undo/redo as snapshot stacks (pure; the graph store keeps one `History` and calls `record`
// before each edit, `undo`/`redo` to move through it). A snapshot is nodes + edges without
// selection. `record` with a `coalesceKey` merges consecutive edits of the same thing (typing in
// one param field) into one undo step.
import type { FlowEdge, FlowNode } from './graphLogic';

export interface Snapshot {
  nodes: FlowNode[];
  edges: FlowEdge[];
}

export interface History {
  past: Snapshot[];
  future: Snapshot[];
  lastKey: string | null;
}

export const LIMIT = 100;
export const emptyHistory = (): History => ({ past: [], future: [], lastKey: null });

export function snapshot(nodes: FlowNode[], edges: FlowEdge[]): Snapshot {
  return {
    nodes: nodes.map((n) => ({ ...n, selected: false, dragging: false })),
    edges: edges.map((e) => ({ ...e, selected: false })),
  };
}

export function record(h: History, snap: Snapshot, coalesceKey: string | null = null): History {
  if (coalesceKey !== null && coalesceKey === h.lastKey) return h;
  return { past: [...h.past, snap].slice(-LIMIT), future: [], lastKey: coalesceKey };
}

export function undo(h: History, current: Snapshot): [History, Snapshot | null] {
  const prev = h.past[h.past.length - 1];
  if (!prev) return [h, null];
  return [{ past: h.past.slice(0, -1), future: [current, ...h.future], lastKey: null }, prev];
}

export function redo(h: History, current: Snapshot): [History, Snapshot | null] {
  const next = h.future[0];
  if (!next) return [h, null];
  return [{ past: [...h.past, current], future: h.future.slice(1), lastKey: null }, next];
}
