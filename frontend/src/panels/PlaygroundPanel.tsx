// Playground: run the open flow and watch it on the canvas. Chat mode streams
// POST /api/v1/run/{flow}?stream=true over fetch + ReadableStream (api/sse.ts): each `step` event
// goes to the run view (nodes recolour live) and the final `end` event's outputs become the
// assistant's reply. JSON mode posts POST /flows/{id}/runs {"inputs"} and follows
// GET /runs/{id}/events. Unsaved edits are saved first (`ensureSaved` from the page) and runs pin
// the version on the canvas (not the flow's published version).
import { useRef, useState } from 'react';
import { Link } from 'react-router-dom';
import { runs } from '../api/endpoints';
import { ApiError } from '../api/http';
import { streamChatRun } from '../api/sse';
import { useGraph } from '../stores/graph';
import { useRunView } from '../stores/runView';
import { CodeEditor } from './CodeEditor';
import { SignalBox } from './SignalBox';

interface Message {
  role: 'user' | 'assistant' | 'error';
  text: string;
  runId?: string;
  status?: string;
}

export function outputText(outputs: unknown): string {
  if (outputs === null || outputs === undefined) return '(no output)';
  if (typeof outputs === 'string') return outputs;
  if (typeof outputs === 'object' && outputs && 'text' in outputs && typeof (outputs as { text: unknown }).text === 'string') {
    return (outputs as { text: string }).text;
  }
  return JSON.stringify(outputs, null, 2);
}

function errorText(e: unknown): string {
  if (e instanceof ApiError) return e.detail ?? e.title;
  if (e && typeof e === 'object' && 'message' in e) return String((e as { message: unknown }).message);
  return typeof e === 'string' ? e : JSON.stringify(e);
}

export function PlaygroundPanel({ flowId, ensureSaved, canRun }: { flowId: string; ensureSaved: () => Promise<boolean>; canRun: boolean }) {
  const [mode, setMode] = useState<'chat' | 'json'>('chat');
  const [messages, setMessages] = useState<Message[]>([]);
  const [text, setText] = useState('');
  const [inputs, setInputs] = useState('{\n  "input_value": "hello"\n}');
  const [busy, setBusy] = useState(false);
  const runId = useRunView((s) => s.runId);
  const runStatus = useRunView((s) => s.runStatus);
  const eventCount = useRunView((s) => s.events.length);
  const abort = useRef<AbortController | null>(null);
  const nodeIds = () => useGraph.getState().nodes.map((n) => n.id);
  const add = (m: Message) => setMessages((ms) => [...ms, m]);

  const sendChat = async () => {
    const value = text.trim();
    if (!value || busy) return;
    if (!(await ensureSaved())) return;
    setText('');
    add({ role: 'user', text: value });
    setBusy(true);
    const rv = useRunView.getState();
    rv.beginStream(nodeIds());
    abort.current = new AbortController();
    try {
      await streamChatRun(
        flowId,
        value,
        {
          onEvent: (e) => {
            useRunView.getState().pushEvent(e);
            // The stream names its run only at the end; a waiting node needs it now (to signal).
            if (e.to_status === 'waiting' && !useRunView.getState().runId) {
              void runs.list({ flow_id: flowId, limit: 1 }).then((p) => {
                if (p.items[0]) useRunView.setState({ runId: p.items[0].id });
              });
            }
          },
          onEnd: (r) => {
            useRunView.setState({ runId: r.run_id, runStatus: r.status });
            add(
              r.status === 'succeeded'
                ? { role: 'assistant', text: outputText(r.outputs), runId: r.run_id, status: r.status }
                : { role: 'error', text: `Run ${r.status}: ${errorText(r.error)}`, runId: r.run_id, status: r.status },
            );
          },
        },
        abort.current.signal,
        useGraph.getState().version,
      );
    } catch (err) {
      if (!abort.current?.signal.aborted) add({ role: 'error', text: errorText(err) });
    } finally {
      setBusy(false);
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
    if (!(await ensureSaved())) return;
    setBusy(true);
    try {
      const created = await runs.start(flowId, parsed, useGraph.getState().version);
      add({ role: 'user', text: `Run ${created.id.slice(0, 8)} started`, runId: created.id });
      useRunView.getState().startLive(created.id, nodeIds(), (status) => {
        void runs.get(created.id).then((run) => {
          useRunView.getState().setRun(run);
          add(
            status === 'succeeded'
              ? { role: 'assistant', text: outputText(run.outputs), runId: run.id, status }
              : { role: 'error', text: `Run ${status}: ${errorText(run.error)}`, runId: run.id, status },
          );
          setBusy(false);
        });
      });
    } catch (err) {
      add({ role: 'error', text: errorText(err) });
      setBusy(false);
    }
  };

  return (
    <div className="panel-body playground">
      <div className="seg">
        <button className={mode === 'chat' ? 'active' : ''} onClick={() => setMode('chat')}>
          Chat
        </button>
        <button className={mode === 'json' ? 'active' : ''} onClick={() => setMode('json')}>
          JSON inputs
        </button>
      </div>
      <div className="chat-log" data-testid="chat-log">
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
          <div className="bubble assistant pending">
            <span className="spinner" /> {runStatus ?? 'starting'} · {eventCount} events
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
            void sendChat();
          }}
        >
          <input value={text} onChange={(e) => setText(e.target.value)} placeholder="Type a message…" aria-label="chat message" disabled={busy} />
          <button className="btn primary" type="submit" disabled={busy || !text.trim()} data-testid="send">
            Send
          </button>
        </form>
      ) : (
        <div className="json-run">
          <CodeEditor value={inputs} onChange={setInputs} language="json" minLines={4} ariaLabel="run inputs" />
          <button className="btn primary" onClick={() => void startJson()} disabled={busy} data-testid="start-run">
            Start run
          </button>
        </div>
      )}
    </div>
  );
}
