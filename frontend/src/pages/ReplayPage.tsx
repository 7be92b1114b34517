// Replay of one run on the canvas: loads the run (GET /api/v1/runs/{id}), the flow version it is
// pinned to (GET /flows/{fid}/versions/{v}) read-only, and its event log (GET /runs/{id}/events,
// replayed from the start and followed live while the run is not terminal). The Timeline scrubs
// through transitions, RunInspector shows the selected node's step; actions: resume a failed or
// cancelled run, cancel a live one, fork from the selected node with edited inputs, answer a
// waiting node (SignalBox). Each load has its own AbortController: opening another run aborts the
// previous load and its follow, whose late answers are dropped; the follow's connection state shows
// in the toolbar (components/ConnectionBadge.tsx).
import { useCallback, useEffect, useRef, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router-dom';
import { flows, runs } from '../api/endpoints';
import { describeError, isAbort } from '../api/errors';
import { asFlowDefinition, type RunWithSteps } from '../api/types';
import { ConnectionBadge } from '../components/ConnectionBadge';
import { FlowCanvas, type FlowInstance } from '../canvas/FlowCanvas';
import { CodeEditor } from '../panels/CodeEditor';
import { RunInspector } from '../panels/RunInspector';
import { SignalBox } from '../panels/SignalBox';
import { Timeline } from '../panels/Timeline';
import { durationBetween, fmtDuration, timeAgo } from '../lib/download';
import { useAuth } from '../stores/auth';
import { useCatalogue } from '../stores/catalogue';
import { useGraph } from '../stores/graph';
import { useRunView } from '../stores/runView';
import { StatusPill } from './RunsPage';
import { fire } from '../lib/fire';

const LIVE = new Set(['queued', 'running', 'waiting']);

export function ReplayPage() {
  const { runId = '' } = useParams();
  const navigate = useNavigate();
  const canRun = useAuth((s) => s.can('runs:write'));
  const loadCatalogue = useCatalogue((s) => s.load);
  const ready = useCatalogue((s) => s.loaded);
  const run = useRunView((s) => s.run);
  const selected = useGraph((s) => s.nodes.find((n) => n.selected)?.id ?? null);
  const [flowName, setFlowName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [forkOpen, setForkOpen] = useState(false);
  const [forkInputs, setForkInputs] = useState('{}');
  const [loaded, setLoaded] = useState(false);
  const [generation, setGeneration] = useState(0);
  const rf = useRef<FlowInstance | null>(null);
  const loadKey = `${runId}:${generation}`;
  const [shownKey, setShownKey] = useState(loadKey);
  if (shownKey !== loadKey) {
    // another run (or a resumed one): show "loading" while rendering, not from the load effect
    setShownKey(loadKey);
    setLoaded(false);
    setError(null);
  }

  /** Re-reads the run's steps; an answer for a run no longer shown is dropped. */
  const refreshRun = useCallback(async () => {
    try {
      const r = await runs.get(runId);
      if (useRunView.getState().runId === runId) useRunView.getState().setRun(r);
    } catch (err) {
      if (!isAbort(err)) setError(describeError(err));
    }
  }, [runId]);

  useEffect(() => {
    fire(loadCatalogue());
    const abort = new AbortController();
    const { signal } = abort;
    (async () => {
      const r: RunWithSteps = await runs.get(runId, signal);
      const [ver, flow] = await Promise.all([
        flows.version(r.flow_id, r.flow_version, signal),
        flows.get(r.flow_id, signal).catch((err: unknown) => {
          if (isAbort(err)) throw err;
          return null; // the flow was deleted: its pinned version still replays
        }),
      ]);
      if (signal.aborted) return;
      setFlowName(flow?.name ?? '(deleted flow)');
      useGraph.getState().load(asFlowDefinition(ver.definition), { flowId: r.flow_id, name: flow?.name, version: r.flow_version, readOnly: true });
      const ids = useGraph.getState().nodes.map((n) => n.id);
      useRunView.getState().openReplay(r, [], ids);
      setForkInputs(JSON.stringify(r.inputs, null, 2));
      setLoaded(true);
      setTimeout(() => rf.current && fire(rf.current.fitView({ padding: 0.2, maxZoom: 1.2 })), 50);
      const end = await useRunView.getState().follow(
        { kind: 'events', runId },
        {
          nodeIds: ids,
          replay: true,
          onEvent: (e) => {
            if (e.kind === 'run' || e.to_status === 'failed') fire(refreshRun());
          },
        },
      );
      if (end && !signal.aborted) fire(refreshRun());
    })().catch((err: unknown) => {
      if (!signal.aborted) setError(describeError(err));
    });
    return () => {
      abort.abort();
      useRunView.getState().clear();
    };
    // `generation` re-opens the run in place after a resume (its event log goes on).
  }, [runId, loadCatalogue, refreshRun, generation]);

  // While live, refresh step details now and then (inputs/outputs are not in the events).
  useEffect(() => {
    if (!run || !LIVE.has(run.status)) return;
    const t = setInterval(() => fire(refreshRun()), 2000);
    return () => clearInterval(t);
  }, [run, refreshRun]);

  const act = async (fn: () => Promise<unknown>) => {
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError(describeError(err));
    }
  };

  const resume = () =>
    act(async () => {
      await runs.resume(runId);
      setGeneration((g) => g + 1);
    });

  const fork = () =>
    act(async () => {
      if (!selected) throw new Error('Select the node to fork from.');
      const parsed = JSON.parse(forkInputs) as Record<string, unknown>;
      const changed = JSON.stringify(parsed) !== JSON.stringify(run?.inputs);
      const created = await runs.fork(runId, selected, changed ? parsed : undefined);
      setForkOpen(false);
      navigate(`/runs/${created.id}`);
    });

  return (
    <div className="editor replay">
      <div className="toolbar">
        <div className="toolbar-left">
          <h2 className="flow-title mono" data-testid="replay-title">
            Run {runId.slice(0, 8)}
          </h2>
          {run && <StatusPill status={run.status} />}
          <ConnectionBadge />
          {run && (
            <span className="muted small">
              <Link to={`/flows/${run.flow_id}`}>{flowName}</Link> · v{run.flow_version} · {timeAgo(run.created_at)} ·{' '}
              {fmtDuration(durationBetween(run.started_at ?? run.created_at, run.finished_at))}
              {run.parent_run_id && (
                <>
                  {' '}
                  · fork of <Link to={`/runs/${run.parent_run_id}`}>{run.parent_run_id.slice(0, 8)}</Link> @ {run.fork_of_node}
                </>
              )}
            </span>
          )}
        </div>
        <div className="toolbar-right">
          {canRun && run && (run.status === 'failed' || run.status === 'cancelled') && (
            <button className="btn primary" onClick={() => fire(resume())} data-testid="resume">
              Resume run
            </button>
          )}
          {canRun && run && LIVE.has(run.status) && (
            <button className="btn danger" onClick={() => fire(act(() => runs.cancel(runId)))}>
              Cancel
            </button>
          )}
          {canRun && run && (
            <button className="btn" onClick={() => setForkOpen((o) => !o)} data-testid="fork-open" disabled={!selected} title={selected ? '' : 'Select a node first'}>
              Fork from {selected ?? 'node…'}
            </button>
          )}
        </div>
      </div>
      {error && <div className="banner error">{error}</div>}
      {forkOpen && selected && (
        <div className="banner fork">
          <div className="fork-form">
            <strong>Fork from “{selected}”</strong>
            <span className="muted small">Steps before it are reused; it and everything downstream run again. Edit the run inputs if you like:</span>
            <CodeEditor value={forkInputs} onChange={setForkInputs} language="json" minLines={3} ariaLabel="fork inputs" />
            <div className="row gap-sm">
              <button className="btn primary" onClick={() => fire(fork())} data-testid="fork-submit">
                Start fork
              </button>
              <button className="btn ghost" onClick={() => setForkOpen(false)}>
                Cancel
              </button>
            </div>
          </div>
        </div>
      )}
      <div className="editor-body">
        {ready && loaded ? <FlowCanvas onReady={(i) => (rf.current = i)} /> : <div className="canvas-wrap empty">Loading…</div>}
        <aside className="sidepanel">
          <div className="sidepanel-scroll">
            {run && LIVE.has(run.status) && <SignalBox runId={runId} />}
            <RunInspector nodeId={selected} />
          </div>
        </aside>
      </div>
      <Timeline />
    </div>
  );
}
