// Version history of the open flow (GET /api/v1/flows/{id}/versions): every save is a version.
// "Restore" posts /versions/{v}/restore (a NEW version with that definition) and reloads the canvas
// through `onRestored`; "Preview" opens that version read-only (GET /versions/{v}).
import { useEffect, useState } from 'react';
import { flows } from '../api/endpoints';
import type { FlowVersion } from '../api/types';
import { timeAgo } from '../lib/download';
import { useGraph } from '../stores/graph';
import { fire } from '../lib/fire';
import { errorText } from '../api/errors';

interface Props {
  flowId: string;
  current: number;
  published?: number | null;
  canWrite: boolean;
  onRestored: () => void;
  onPreview: (version: number) => void;
}

export function VersionsPanel({ flowId, current, published, canWrite, onRestored, onPreview }: Props) {
  const dirty = useGraph((s) => s.dirty);
  const [items, setItems] = useState<FlowVersion[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    flows.versions(flowId).then(setItems).catch((e: unknown) => setError(errorText(e)));
  }, [flowId, current]);

  const restore = async (v: number) => {
    if (dirty && !confirm('Discard unsaved changes and restore this version?')) return;
    try {
      await flows.restore(flowId, v);
      onRestored();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <div className="panel-body">
      <h3>Version history</h3>
      <p className="muted small">Saving makes a new immutable version; runs pin the version they started on.</p>
      {error && <div className="alert error small">{error}</div>}
      {!items ? (
        <div className="empty small">Loading…</div>
      ) : (
        <ul className="version-list">
          {items.map((v) => (
            <li key={v.version} className={v.version === current ? 'current' : ''}>
              <div>
                <strong>v{v.version}</strong>
                {v.version === current && <span className="badge green">current</span>}
                {v.version === published && <span className="badge">published</span>}
                <div className="muted small">{timeAgo(v.created_at)}</div>
              </div>
              <div className="row gap-sm">
                <button className="btn sm ghost" onClick={() => onPreview(v.version)}>
                  Preview
                </button>
                {canWrite && v.version !== current && (
                  <button className="btn sm" onClick={() => fire(restore(v.version))}>
                    Restore
                  </button>
                )}
              </div>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
