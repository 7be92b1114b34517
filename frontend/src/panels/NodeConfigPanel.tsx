// Config panel of the selected node: id (renamable; templates use it), label, the params form
// generated from the node's JSON Schema (SchemaForm), retry/timeout, and the server's validation
// errors for this node. Edits go through graph store actions (updateNodeData, renameNode). A node
// type the server cannot run here (catalogue `available: false`) shows why; the code node also says
// when the user lacks the `nodes:code` permission (saving would be refused).
import { useMemo, useState } from 'react';
import { useAuth } from '../stores/auth';
import { useCatalogue } from '../stores/catalogue';
import { useGraph } from '../stores/graph';
import { categoryStyle } from '../canvas/nodeVisuals';
import { SchemaForm } from './SchemaForm';

const EMPTY: string[] = [];

export function NodeConfigPanel({ nodeId }: { nodeId: string }) {
  const node = useGraph((s) => s.nodes.find((n) => n.id === nodeId));
  const nodeIds = useGraph((s) => s.nodes.map((n) => n.id).join('|'));
  const errors = useGraph((s) => s.nodeErrors[nodeId] ?? EMPTY);
  const readOnly = useGraph((s) => s.readOnly);
  const mayUseCode = useAuth((s) => s.can('nodes:code'));
  const spec = useCatalogue((s) => (node?.type ? s.byType[node.type] : undefined));
  const { updateNodeData, renameNode } = useGraph.getState();
  const [idDraft, setIdDraft] = useState(nodeId);
  const [idError, setIdError] = useState<string | null>(null);
  const [shownId, setShownId] = useState(nodeId);
  if (shownId !== nodeId) {
    // another node was selected: reset the id field while rendering (no effect, no extra commit)
    setShownId(nodeId);
    setIdDraft(nodeId);
    setIdError(null);
  }
  const completions = useMemo(
    () => ['inputs.', 'inputs.input_value', ...nodeIds.split('|').filter((id) => id && id !== nodeId).map((id) => `${id}.`)],
    [nodeIds, nodeId],
  );
  if (!node) return null;
  const style = categoryStyle(spec?.category);
  const data = node.data;

  return (
    <div className="config-panel" data-testid="config-panel">
      <div className="config-head" style={{ '--accent': style.color } as React.CSSProperties}>
        <span className="config-glyph">{style.glyph}</span>
        <div>
          <h3>{spec?.title ?? node.type}</h3>
          <p className="muted small">{spec?.description}</p>
        </div>
      </div>
      {spec?.available === false && (
        <div className="alert error small" data-testid="node-unavailable">
          Unavailable on this installation: {spec.unavailable_reason}
        </div>
      )}
      {node.type === 'code' && spec?.available !== false && !mayUseCode && (
        <div className="alert error small" data-testid="node-permission">
          Using the code node needs the nodes:code permission (an administrator grants it).
        </div>
      )}
      {errors.length > 0 && (
        <div className="alert error small">
          {errors.map((e, i) => (
            <div key={i}>{e}</div>
          ))}
        </div>
      )}
      <div className="field">
        <div className="field-label">
          <span>Node id</span>
          <span className="muted small">use as {'{{ '}{nodeId}.field{' }}'}</span>
        </div>
        <input
          value={idDraft}
          disabled={readOnly}
          aria-label="node id"
          onChange={(e) => setIdDraft(e.target.value)}
          onBlur={() => setIdError(renameNode(nodeId, idDraft.trim()))}
          onKeyDown={(e) => e.key === 'Enter' && (e.target as HTMLInputElement).blur()}
        />
        {idError && <div className="field-error">{idError}</div>}
      </div>
      <div className="field">
        <div className="field-label">
          <span>Label</span>
        </div>
        <input
          value={data.label ?? ''}
          disabled={readOnly}
          placeholder={spec?.title}
          aria-label="label"
          onChange={(e) => updateNodeData(nodeId, { label: e.target.value || undefined }, 'label')}
        />
      </div>
      <h4 className="section-title">Parameters</h4>
      {spec ? (
        <SchemaForm
          schema={spec.params_schema}
          params={data.params ?? {}}
          completions={completions}
          readOnly={readOnly}
          onChange={(params, field) => updateNodeData(nodeId, { params }, `p:${field}`)}
        />
      ) : (
        <div className="alert error small">Unknown node type “{node.type}”.</div>
      )}
      <details className="advanced">
        <summary>Retries & timeout</summary>
        <div className="grid2">
          <label className="field">
            <span className="field-label">Max attempts</span>
            <input
              type="number"
              min={1}
              max={100}
              disabled={readOnly}
              aria-label="max attempts"
              value={data.retry?.max_attempts ?? ''}
              placeholder="1"
              onChange={(e) =>
                updateNodeData(
                  nodeId,
                  { retry: e.target.value ? { ...(data.retry ?? {}), max_attempts: Number(e.target.value) } : undefined },
                  'retry',
                )
              }
            />
          </label>
          <label className="field">
            <span className="field-label">Timeout (s)</span>
            <input
              type="number"
              min={0}
              disabled={readOnly}
              aria-label="timeout"
              value={data.timeout_s ?? ''}
              placeholder="default"
              onChange={(e) => updateNodeData(nodeId, { timeout_s: e.target.value ? Number(e.target.value) : undefined }, 'timeout')}
            />
          </label>
        </div>
      </details>
    </div>
  );
}
