// Answers waiting `wait_for_signal` steps of a run: lists every waiting (node, map item) pair of
// the run view's event log at the cursor (`waitingItems`), so item 3 of a map can be answered as
// well as item 0, and posts POST /api/v1/runs/{id}/signal {node_id, item_index, payload} with JSON
// (or plain text) typed by the user. Used by the playground and the replay page.
import { useId, useMemo, useState } from 'react';
import { runs } from '../api/endpoints';
import { errorText } from '../api/errors';
import { waitingItems } from '../stores/runState';
import { useRunView } from '../stores/runView';
import { fire } from '../lib/fire';

export function SignalBox({ runId }: { runId: string }) {
  const events = useRunView((s) => s.events);
  const cursor = useRunView((s) => s.cursor);
  const waiting = useMemo(() => waitingItems(events, cursor), [events, cursor]);
  const [payload, setPayload] = useState('{"approved": true}');
  const [msg, setMsg] = useState<string | null>(null);
  const fieldId = useId();
  if (!waiting.length) return null;
  const send = async (nodeId: string, item: number) => {
    let body: unknown = payload;
    try {
      body = JSON.parse(payload);
    } catch {
      /* plain text payload */
    }
    try {
      const r = await runs.signal(runId, nodeId, body, item);
      setMsg(r.delivered ? `Signal delivered to ${nodeId}${item ? `[${item}]` : ''}.` : `Signal stored for ${nodeId}.`);
    } catch (err) {
      setMsg(errorText(err));
    }
  };
  return (
    <div className="signal-box" data-testid="signal-box">
      <h4>Waiting for a signal</h4>
      <label htmlFor={fieldId} className="small">
        Signal payload (JSON or text)
      </label>
      <textarea id={fieldId} value={payload} onChange={(e) => setPayload(e.target.value)} rows={2} />
      <div className="row gap-sm wrap">
        {waiting.map((w) => (
          <button
            key={`${w.node_id}:${w.item_index}`}
            className="btn primary sm"
            data-testid={`answer-${w.node_id}-${w.item_index}`}
            onClick={() => fire(send(w.node_id, w.item_index))}
          >
            Answer {w.node_id}
            {w.item_index ? ` [item ${w.item_index}]` : ''}
          </button>
        ))}
      </div>
      {msg && (
        <div className="muted small" role="status">
          {msg}
        </div>
      )}
    </div>
  );
}
