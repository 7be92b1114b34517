// What the canvas shows about a run (live or replayed): the run's event log, the scrubber
// position, each node's step state at that position, and the connection state of the follow.
// Every page follows runs through `follow(source, opts)` (api/follow.ts: chat stream or event
// log, reconnects with Last-Event-ID, stops on 4xx): events recolour nodes as they arrive, the
// run id is learned from the stream, `connection` is live / reconnecting / failed / ...; `stop()`
// aborts the follow. A newer follow (or `clear`) aborts the older one, whose late events are
// dropped. `openReplay(run, events)` and `seek(i)` serve the replay page; FlowNode reads `states`.
import { create } from 'zustand';
import { followRun, type ConnectionState, type RunEnd, type RunSource } from '../api/follow';
import type { RunEvent, RunWithSteps } from '../api/types';
import { runStatusAt, statesAt, type NodeStates } from './runState';

export interface FollowOptions {
  nodeIds: string[];
  /** Keep the replay mode and scrubber (the replay page follows the run it shows). */
  replay?: boolean;
  onToken?: (t: { node_id?: string; text: string }) => void;
  /** Called after each event is applied (the replay page refreshes step details). */
  onEvent?: (e: RunEvent) => void;
}

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
  connection: ConnectionState;
  connectionDetail: string | null;
  clear: () => void;
  follow: (source: RunSource, opts: FollowOptions) => Promise<RunEnd | null>;
  stop: () => void;
  pushEvent: (e: RunEvent) => void;
  openReplay: (run: RunWithSteps, events: RunEvent[], nodeIds: string[]) => void;
  setRun: (run: RunWithSteps) => void;
  seek: (cursor: number) => void;
}

const IDLE = { connection: 'idle' as ConnectionState, connectionDetail: null, abort: null };

export const useRunView = create<RunViewState>((set, get) => ({
  mode: 'none',
  runId: null,
  run: null,
  events: [],
  cursor: -1,
  states: {},
  runStatus: null,
  nodeIds: [],
  ...IDLE,

  clear: () => {
    get().abort?.abort();
    set({ mode: 'none', runId: null, run: null, events: [], cursor: -1, states: {}, runStatus: null, ...IDLE });
  },

  follow: (source, opts) => {
    get().abort?.abort();
    const abort = new AbortController();
    const current = () => get().abort === abort;
    const runId = source.kind === 'events' ? source.runId : null;
    if (opts.replay) set({ abort, runId: runId ?? get().runId, connection: 'connecting', connectionDetail: null });
    else {
      set({
        mode: 'live',
        runId,
        run: null,
        events: [],
        cursor: -1,
        nodeIds: opts.nodeIds,
        states: statesAt([], -1, opts.nodeIds),
        runStatus: 'queued',
        abort,
        connection: 'connecting',
        connectionDetail: null,
      });
    }
    return followRun(
      source,
      {
        onEvent: (e) => {
          if (!current()) return;
          get().pushEvent(e);
          opts.onEvent?.(e);
        },
        onToken: (t) => current() && opts.onToken?.(t),
        onRunId: (id) => current() && set({ runId: id }),
        onState: (connection, detail) => current() && set({ connection, connectionDetail: detail ?? null }),
      },
      abort.signal,
    ).then((end) => {
      if (end && current()) set({ runId: end.run_id || get().runId, runStatus: end.status });
      return end;
    });
  },

  stop: () => {
    const abort = get().abort;
    if (!abort) return;
    abort.abort();
    set({ connection: 'stopped', connectionDetail: null });
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
      ...IDLE,
    });
  },

  setRun: (run) => set({ run }),

  seek: (cursor) => {
    const s = get();
    const c = Math.max(-1, Math.min(cursor, s.events.length - 1));
    set({ cursor: c, states: statesAt(s.events, c, s.nodeIds), runStatus: runStatusAt(s.events, c) });
  },
}));
