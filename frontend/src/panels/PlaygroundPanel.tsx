// Playground: run the open flow and watch it on the canvas, through the one run-following path
// (stores/runView.ts `follow`). Chat mode streams POST /api/v1/run/{flow}?stream=true (tokens
// show as they arrive; the API names the run first, so a dropped stream resumes on the run's
// event log); JSON mode posts POST /flows/{id}/runs {"inputs"} and follows GET /runs/{id}/events.
// The connection state is shown (live / reconnecting / failed); Stop aborts the follow and
// cancels the run; every outcome, failures included, ends "busy". Chat history, mode and inputs
// live in stores/panels.ts so switching side-panel tabs keeps them. Unsaved edits are saved first
// (`ensureSaved` from the page) and runs pin the version on the canvas.
import { useState } from 'react';
import { Link } from 'react-router-dom';
import { runs } from '../api/endpoints';
import { describeError, errorText } from '../api/errors';
import type { RunEnd } from '../api/follow';
import { ConnectionBadge } from '../components/ConnectionBadge';
import { useGraph } from '../stores/graph';
import { usePanels, useFlowPanels, type ChatMessage } from '../stores/panels';
import { useRunView } from '../stores/runView';
import { CodeEditor } from './CodeEditor';
import { SignalBox } from './SignalBox';
import { fire } from '../lib/fire';

export function outputText(outputs: unknown): string {
  if (outputs === null || outputs === undefined) return '(no output)';
  if (typeof outputs === 'string') return outputs;
  if (typeof outputs === 'object' && outputs && 'text' in outputs && typeof (outputs as { text: unknown }).text === 'string') {
    return (outputs as { text: string }).text;
  }
  return JSON.stringify(outputs, null, 2);
}

const ACTIVE = new Set(['connecting', 'live', 'reconnecting']);

function newKey(): string {
  return typeof crypto !== 'undefined' && 'randomUUID' in crypto ? crypto.randomUUID() : `k-${Date.now()}-${Math.random()}`;
}

/** The final message of a run: the chat end carries outputs, an event-log end only the status. */
async function endMessage(end: RunEnd): Promise<ChatMessage> {
  let { outputs, error } = end;
  if (!('outputs' in end) && end.run_id) ({ outputs, error } = await runs.get(end.run_id));
  return end.status === 'succeeded'
    ? { role: 'assistant', text: outputText(outputs), runId: end.run_id, status: end.status }
    : { role: 'error', text: `Run ${end.status}: ${errorText(error)}`, runId: end.run_id, status: end.status };
}

export function PlaygroundPanel({ flowId, ensureSaved, canRun }: { flowId: string; ensureSaved: () => Promise<boolean>; canRun: boolean }) {
  const { mode, messages, draft, inputs, streaming } = useFlowPanels(flowId);
  const patch = (p: Parameters<ReturnType<typeof usePanels.getState>['patch']>[1]) => usePanels.getState().patch(flowId, p);
  const add = (m: ChatMessage) => usePanels.getState().addMessage(flowId, m);
  const [starting, setStarting] = useState(false);
  const runId = useRunView((s) => s.runId);
  const runStatus = useRunView((s) => s.runStatus);
  const eventCount = useRunView((s) => s.events.length);
  const connection = useRunView((s) => s.connection);
  const busy = starting || ACTIVE.has(connection);
  const nodeIds = () => useGraph.getState().nodes.map((n) => n.id);

  /** Follows to the end; whatever happens, one message reports it and busy ends. */
  const finish = async (follow: Promise<RunEnd | null>) => {
    try {
      const end = await follow;
      if (end) add(await endMessage(end));
    } catch (err) {
      const text = describeError(err);
      if (text) add({ role: 'error', text, runId: useRunView.getState().runId ?? undefined });
    } finally {
      patch({ streaming: '' });
    }
  };

  const sendChat = async () => {
    const value = draft.trim();
    if (!value || busy) return;
    setStarting(true);
    try {
      if (!(await ensureSaved())) return;
      patch({ draft: '', streaming: '' });
      add({ role: 'user', text: value });
      const follow = useRunView.getState().follow(
        { kind: 'chat', flowId, inputValue: value, version: useGraph.getState().version, idempotencyKey: newKey() },
        { nodeIds: nodeIds(), onToken: (t) => patch((cur) => ({ streaming: cur.streaming + t.text })) },
      );
      setStarting(false);
      await finish(follow);
    } finally {
      setStarting(false);
    }
  };

  const startJson = async () => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(inputs) as Record<string, unknown>;
    } catch {
      add({ role: 'error', text: 'Inputs must be a JSON object.' });
      return;
    }
    setStarting(true);
    try {
      if (!(await ensureSaved())) return;
      const created = await runs.start(flowId, parsed, useGraph.getState().version);
      add({ role: 'user', text: `Run ${created.id.slice(0, 8)} started`, runId: created.id });
      const follow = useRunView.getState().follow({ kind: 'events', runId: created.id }, { nodeIds: nodeIds() });
      setStarting(false);
      await finish(follow);
    } catch (err) {
      const text = describeError(err);
      if (text) add({ role: 'error', text });
    } finally {
      setStarting(false);
    }
  };

  const stop = () => {
    const id = useRunView.getState().runId;
    useRunView.getState().stop();
    add({ role: 'error', text: id ? `Stopped: run ${id.slice(0, 8)} is being cancelled.` : 'Stopped.', runId: id ?? undefined });
    if (id) runs.cancel(id).catch((err: unknown) => add({ role: 'error', text: `Cancel failed: ${errorText(err)}` }));
  };

  return (
    <div className="panel-body playground">
      <div className="row between">
        <div className="seg" role="group" aria-label="Playground mode">
          <button className={mode === 'chat' ? 'active' : ''} aria-pressed={mode === 'chat'} onClick={() => patch({ mode: 'chat' })}>
            Chat
          </button>
          <button className={mode === 'json' ? 'active' : ''} aria-pressed={mode === 'json'} onClick={() => patch({ mode: 'json' })}>
            JSON inputs
          </button>
        </div>
        <ConnectionBadge />
      </div>
      <div className="chat-log" data-testid="chat-log" aria-live="polite">
        {messages.length === 0 && (
          <div className="empty small">
            {mode === 'chat'
              ? 'Send a message: it becomes inputs.input_value. Nodes light up as steps run.'
              : 'Start a run with any JSON inputs ({{ inputs.name }} in templates).'}
          </div>
        )}
        {messages.map((m, i) => (
          <div key={i} className={`bubble ${m.role}`} data-testid={`bubble-${m.role}`}>
            <pre>{m.text}</pre>
            {m.runId && (
              <Link className="small" to={`/runs/${m.runId}`}>
                open replay →
              </Link>
            )}
          </div>
        ))}
        {busy && (
          <div className="bubble assistant pending" data-testid="pending">
            {streaming ? <pre>{streaming}</pre> : null}
            <span className="spinner" aria-hidden /> {runStatus ?? 'starting'} · {eventCount} events
            <button className="btn sm danger" onClick={stop} disabled={starting} data-testid="stop-run">
              Stop
            </button>
          </div>
        )}
      </div>
      {runId && <SignalBox runId={runId} />}
      {!canRun ? (
        <p className="muted small">Your role cannot start runs.</p>
      ) : mode === 'chat' ? (
        <form
          className="chat-input"
          onSubmit={(e) => {
            e.preventDefault();
            fire(sendChat());
          }}
        >
          <input value={draft} onChange={(e) => patch({ draft: e.target.value })} placeholder="Type a message…" aria-label="chat message" disabled={busy} />
          <button className="btn primary" type="submit" disabled={busy || !draft.trim()} data-testid="send">
            Send
          </button>
        </form>
      ) : (
        <div className="json-run">
          <CodeEditor value={inputs} onChange={(v) => patch({ inputs: v })} language="json" minLines={4} ariaLabel="run inputs" />
          <button className="btn primary" onClick={() => fire(startJson())} disabled={busy} data-testid="start-run">
            Start run
          </button>
        </div>
      )}
    </div>
  );
}
