// Details of one node in a run (replay page side panel): its step(s) with status, attempts,
// timings (queued / ran / total), input, output and error; with no node selected, the run's own
// inputs, outputs and error. Reads run.steps from the run view store.
import type { Step } from '../api/types';
import { fmtDuration } from '../lib/download';
import { stepTimings } from '../stores/runState';
import { useRunView } from '../stores/runView';

function Json({ value }: { value: unknown }) {
  if (value === null || value === undefined) return <span className="muted small">—</span>;
  return <pre className="json">{typeof value === 'string' ? value : JSON.stringify(value, null, 2)}</pre>;
}

function StepCard({ step }: { step: Step }) {
  const t = stepTimings(step);
  return (
    <div className="step-card" data-testid={`step-${step.node_id}`}>
      <div className="row between">
        <span className={`pill st-${step.status}`}>{step.status}</span>
        <span className="muted small">
          attempt {step.attempt}/{step.max_attempts}
          {step.item_index ? ` · item ${step.item_index}` : ''}
          {step.branch ? ` · branch ${step.branch}` : ''}
        </span>
      </div>
      <dl className="timings">
        <dt>waited</dt>
        <dd>{fmtDuration(t.queued_s)}</dd>
        <dt>ran</dt>
        <dd>{fmtDuration(t.ran_s)}</dd>
        <dt>total</dt>
        <dd>{fmtDuration(t.total_s)}</dd>
        {step.due_at && (
          <>
            <dt>due</dt>
            <dd>{new Date(step.due_at).toLocaleTimeString()}</dd>
          </>
        )}
      </dl>
      <h5>Input</h5>
      <Json value={step.input} />
      <h5>Output</h5>
      <Json value={step.output} />
      {step.error !== null && step.error !== undefined && (
        <>
          <h5 className="danger">Error</h5>
          <Json value={step.error} />
        </>
      )}
    </div>
  );
}

export function RunInspector({ nodeId }: { nodeId: string | null }) {
  const run = useRunView((s) => s.run);
  if (!run) return <div className="panel-body muted">Loading run…</div>;
  if (!nodeId) {
    return (
      <div className="panel-body">
        <h3>Run</h3>
        <h5>Inputs</h5>
        <Json value={run.inputs} />
        <h5>Outputs</h5>
        <Json value={run.outputs} />
        {run.error !== null && run.error !== undefined && (
          <>
            <h5 className="danger">Error</h5>
            <Json value={run.error} />
          </>
        )}
        <p className="muted small">Select a node to see its input, output, error, attempts and timings.</p>
      </div>
    );
  }
  const steps = run.steps.filter((s) => s.node_id === nodeId);
  return (
    <div className="panel-body" data-testid="inspector">
      <h3 className="mono">{nodeId}</h3>
      {steps.length === 0 ? <p className="muted small">This node has no step in this run.</p> : steps.map((s) => <StepCard key={s.id} step={s} />)}
    </div>
  );
}
