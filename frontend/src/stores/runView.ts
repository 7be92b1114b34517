// What the canvas shows about a run (live or replayed): the run's event log, the scrubber
// position and each node's step state at that position. Pages call `startLive(runId)` (follows
// GET /runs/{id}/events over SSE: nodes recolor as events arrive), `pushEvent` (the playground's
// streamed events), `openReplay(run, events)` and `seek(i)`; FlowNode reads `states[nodeId]`.
import { create } from 'zustand';
import { followRunEvents } from '../api/sse';
import type { RunEvent, RunWithSteps } from '../api/types';
import { runStatusAt, statesAt, type NodeStates } from './runState';

interface RunViewState {
  mode: 'none' | 'live' | 'replay';
  runId: string | null;
  run: RunWithSteps | null;
  events: RunEvent[];
  cursor: number;
  states: NodeStates;
  runStatus: string | null;
  nodeIds: string[];
  abort: AbortController | null;
  clear: () => void;
  startLive: (runId: string, nodeIds: string[], onEnd?: (status: string) => void) => void;
  pushEvent: (e: RunEvent) => void;
  beginStream: (nodeIds: string[]) => void;
  openReplay: (run: RunWithSteps, events: RunEvent[], nodeIds: string[]) => void;
  setRun: (run: RunWithSteps) => void;
  seek: (cursor: number) => void;
}

export const useRunView = create<RunViewState>((set, get) => ({
  mode: 'none',
  runId: null,
  run: null,
  events: [],
  cursor: -1,
  states: {},
  runStatus: null,
  nodeIds: [],
  abort: null,

  clear: () => {
    get().abort?.abort();
    set({ mode: 'none', runId: null, run: null, events: [], cursor: -1, states: {}, runStatus: null, abort: null });
  },

  beginStream: (nodeIds) => {
    get().abort?.abort();
    set({
      mode: 'live',
      runId: null,
      run: null,
      events: [],
      cursor: -1,
      nodeIds,
      states: statesAt([], -1, nodeIds),
      runStatus: 'queued',
      abort: null,
    });
  },

  pushEvent: (e) => {
    const s = get();
    if (s.events.some((x) => x.seq === e.seq)) return;
    const events = [...s.events, e].sort((a, b) => a.seq - b.seq);
    // A replay the user is scrubbing stays where it is; otherwise follow the newest event.
    const follow = s.mode !== 'replay' || s.cursor >= s.events.length - 1;
    const cursor = follow ? events.length - 1 : s.cursor;
    set({
      events,
      cursor,
      states: statesAt(events, cursor, s.nodeIds),
      runStatus: runStatusAt(events, cursor),
    });
  },

  startLive: (runId, nodeIds, onEnd) => {
    get().beginStream(nodeIds);
    const abort = new AbortController();
    set({ runId, abort });
    followRunEvents(runId, (e) => get().pushEvent(e), abort.signal, onEnd).catch(() => undefined);
  },

  openReplay: (run, events, nodeIds) => {
    get().abort?.abort();
    const cursor = events.length - 1;
    set({
      mode: 'replay',
      runId: run.id,
      run,
      events,
      cursor,
      nodeIds,
      states: statesAt(events, cursor, nodeIds),
      runStatus: runStatusAt(events, cursor),
      abort: null,
    });
  },

  setRun: (run) => set({ run }),

  seek: (cursor) => {
    const s = get();
    const c = Math.max(-1, Math.min(cursor, s.events.length - 1));
    set({ cursor: c, states: statesAt(s.events, c, s.nodeIds), runStatus: runStatusAt(s.events, c) });
  },
}));
