// The editor's toolbar above the canvas: flow name (rename), version and save state, undo/redo,
// auto-layout, zoom to fit, shortcuts help and Save. Pure UI: actions come from the graph store
// and the page's callbacks (`onSave`, `onFit`), which own the side effects.
import { useState } from 'react';
import { useGraph } from '../stores/graph';
import { SHORTCUTS } from './useShortcuts';

interface Props {
  onSave: () => void;
  onFit: () => void;
  onRename: (name: string) => void;
  saving: boolean;
  canWrite: boolean;
  draftNote: string | null;
  preview?: number | null;
}

export function Toolbar({ onSave, onFit, onRename, saving, canWrite, draftNote, preview }: Props) {
  const name = useGraph((s) => s.name);
  const version = useGraph((s) => s.version);
  const dirty = useGraph((s) => s.dirty);
  const canUndo = useGraph((s) => s.history.past.length > 0);
  const canRedo = useGraph((s) => s.history.future.length > 0);
  const nodeCount = useGraph((s) => s.nodes.length);
  const { undo, redo, layout } = useGraph.getState();
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState(name);
  const [help, setHelp] = useState(false);

  return (
    <div className="toolbar">
      <div className="toolbar-left">
        {editing ? (
          <input
            className="inline-input title-input"
            value={draft}
            autoFocus
            onChange={(e) => setDraft(e.target.value)}
            onBlur={() => {
              setEditing(false);
              if (draft.trim() && draft !== name) onRename(draft.trim());
            }}
            onKeyDown={(e) => e.key === 'Enter' && (e.target as HTMLInputElement).blur()}
          />
        ) : (
          <h2
            className="flow-title"
            title={canWrite ? 'Click to rename' : undefined}
            onClick={() => {
              if (!canWrite) return;
              setDraft(name);
              setEditing(true);
            }}
          >
            {name}
          </h2>
        )}
        <span className="badge">v{preview ?? version}</span>
        <span className="muted small">{nodeCount} nodes</span>
        {preview ? (
          <span className="save-state preview">previewing v{preview} · read only</span>
        ) : dirty ? (
          <span className="save-state dirty" data-testid="save-state" title={draftNote ?? ''}>
            ● Unsaved changes{draftNote ? ' · draft kept in this browser' : ''}
          </span>
        ) : (
          <span className="save-state clean" data-testid="save-state">
            ✓ Saved
          </span>
        )}
      </div>
      <div className="toolbar-right">
        <button className="btn icon" onClick={undo} disabled={!canUndo || !canWrite} title="Undo (Ctrl+Z)" aria-label="Undo">
          ↶
        </button>
        <button className="btn icon" onClick={redo} disabled={!canRedo || !canWrite} title="Redo (Ctrl+Shift+Z)" aria-label="Redo">
          ↷
        </button>
        <button className="btn" onClick={layout} disabled={!canWrite} title="Auto-layout (L)">
          Auto-layout
        </button>
        <button className="btn" onClick={onFit} title="Zoom to fit (F)">
          Fit
        </button>
        <div className="help-wrap">
          <button className="btn icon" onClick={() => setHelp((h) => !h)} aria-label="Keyboard shortcuts" title="Keyboard shortcuts">
            ⌨
          </button>
          {help && (
            <div className="popover" onClick={() => setHelp(false)}>
              <table>
                <tbody>
                  {SHORTCUTS.map(([k, v]) => (
                    <tr key={k}>
                      <td>
                        <kbd>{k}</kbd>
                      </td>
                      <td>{v}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </div>
        {canWrite && (
          <button className="btn primary" onClick={onSave} disabled={saving || !dirty} data-testid="save">
            {saving ? 'Saving…' : 'Save'}
          </button>
        )}
      </div>
    </div>
  );
}
