// One node card on the canvas (small and pure: props in, JSX out). It reads its catalogue entry
// (title, ports), its step state from the run view (colour ring + badge while a run is live or
// replayed) and its server validation errors from the graph store; renders one React Flow
// <Handle> per typed port. FlowCanvas registers it for every node type in the catalogue (and gives
// React Flow's focusable wrapper its aria-label). Status badges use STATUS_BADGE (4.5:1 on white text).
import { Handle, Position, type NodeProps } from '@xyflow/react';
import { memo } from 'react';
import { useCatalogue } from '../stores/catalogue';
import { useGraph } from '../stores/graph';
import { outputsFor, type FlowNode as FlowNodeT } from '../stores/graphLogic';
import { STATUS_BADGE, STATUS_COLORS } from '../stores/runState';
import { useRunView } from '../stores/runView';
import { categoryStyle, paramSummary } from './nodeVisuals';

const EMPTY: string[] = [];

function portTop(i: number, n: number): string {
  return `${((i + 1) / (n + 1)) * 100}%`;
}

function FlowNodeView({ id, type, data, selected }: NodeProps<FlowNodeT>) {
  const spec = useCatalogue((s) => s.byType[type]);
  const run = useRunView((s) => s.states[id]);
  const errors = useGraph((s) => s.nodeErrors[id] ?? EMPTY);
  const style = categoryStyle(spec?.category);
  const inputs = spec?.inputs ?? [{ name: 'in', type: 'any' }];
  const outputs = outputsFor(spec, data.params);
  const status = run?.status;
  const summary = paramSummary(data);
  const classes = ['fnode', selected ? 'selected' : '', status ? `st-${status}` : '', errors.length ? 'has-error' : '']
    .filter(Boolean)
    .join(' ');
  return (
    <div
      className={classes}
      style={
        {
          '--accent': style.color,
          '--status': status ? STATUS_COLORS[status] : 'transparent',
          '--status-badge': status ? STATUS_BADGE[status] : undefined,
          minHeight: Math.max(inputs.length, outputs.length) > 1 ? 24 + 22 * Math.max(inputs.length, outputs.length) : undefined,
        } as React.CSSProperties
      }
      data-node-id={id}
      data-status={status ?? ''}
      title={errors.join('\n') || spec?.description}
    >
      <div className="fnode-head">
        <span className="fnode-glyph">{style.glyph}</span>
        <span className="fnode-title">{data.label || spec?.title || type}</span>
        {status && (
          <span className="fnode-status" data-testid={`status-${id}`}>
            {status}
            {run && run.attempt > 1 ? ` ·${run.attempt}` : ''}
          </span>
        )}
      </div>
      <div className="fnode-body">
        <code className="fnode-id">{id}</code>
        {summary && <div className="fnode-summary">{summary}</div>}
        {errors.length > 0 && <div className="fnode-error">⚠ {errors[0]}</div>}
      </div>
      {inputs.map((p, i) => (
        <Handle
          key={`in-${p.name}`}
          id={p.name}
          type="target"
          position={Position.Left}
          style={{ top: portTop(i, inputs.length) }}
          className={`port port-${p.type}`}
          title={`${p.name}: ${p.type}`}
        />
      ))}
      {outputs.map((p, i) => (
        <Handle
          key={`out-${p.name}`}
          id={p.name}
          type="source"
          position={Position.Right}
          style={{ top: portTop(i, outputs.length) }}
          className={`port port-${p.type}`}
          title={`${p.name}: ${p.type}`}
        >
          {outputs.length > 1 && <span className="port-label">{p.name}</span>}
        </Handle>
      ))}
    </div>
  );
}

export const FlowNode = memo(FlowNodeView);
