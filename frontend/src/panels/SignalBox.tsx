// Answers a waiting `wait_for_signal` node of a run: lists the run's waiting steps (from the run
// view's node states) and posts POST /api/v1/runs/{id}/signal {node_id, payload} with JSON (or
// plain text) typed by the user. Used by the playground and the replay page.
import { useState } from 'react';
import { runs } from '../api/endpoints';
import { ApiError } from '../api/http';
import { useGraph } from '../stores/graph';
import { useRunView } from '../stores/runView';

export function SignalBox({ runId }: { runId: string }) {
  const states = useRunView((s) => s.states);
  const nodes = useGraph((s) => s.nodes);
  const waiting = nodes.filter((n) => n.type === 'wait_for_signal' && states[n.id]?.status === 'waiting');
  const [payload, setPayload] = useState('{"approved": true}');
  const [msg, setMsg] = useState<string | null>(null);
  if (!waiting.length) return null;
  const send = async (nodeId: string) => {
    let body: unknown = payload;
    try {
      body = JSON.parse(payload);
    } catch {
      /* plain text payload */
    }
    try {
      const r = await runs.signal(runId, nodeId, body);
      setMsg(r.delivered ? `Signal delivered to ${nodeId}.` : `Signal stored for ${nodeId}.`);
    } catch (err) {
      setMsg(err instanceof ApiError ? err.detail ?? err.title : String(err));
    }
  };
  return (
    <div className="signal-box" data-testid="signal-box">
      <h4>Waiting for a signal</h4>
      <textarea value={payload} onChange={(e) => setPayload(e.target.value)} rows={2} aria-label="signal payload" />
      <div className="row gap-sm wrap">
        {waiting.map((n) => (
          <button key={n.id} className="btn primary sm" onClick={() => void send(n.id)}>
            Answer {n.id}
          </button>
        ))}
      </div>
      {msg && <div className="muted small">{msg}</div>}
    </div>
  );
}
