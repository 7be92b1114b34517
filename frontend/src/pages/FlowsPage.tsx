// Flow list: search, create (a starter input -> output flow), rename in place, duplicate, delete,
// import a JSON export (or a bare definition) and export one. Write actions appear only with the
// flows:write permission. Calls api/endpoints `flows.*`; opening a flow routes to /flows/:id.
import { useEffect, useMemo, useRef, useState } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { flows as flowsApi } from '../api/endpoints';
import { ApiError } from '../api/http';
import { asFlowDefinition, type Flow, type FlowDefinition, type FlowExport } from '../api/types';
import { errorText } from '../api/errors';
import { downloadText, timeAgo } from '../lib/download';
import { useAuth } from '../stores/auth';
import { fire } from '../lib/fire';

export const STARTER: FlowDefinition = {
  nodes: [
    { id: 'start', type: 'input', position: { x: 0, y: 80 }, data: { params: {} } },
    { id: 'result', type: 'output', position: { x: 420, y: 80 }, data: { params: {} } },
  ],
  edges: [],
};

function FlowRow({ flow, canWrite, onChanged }: { flow: Flow; canWrite: boolean; onChanged: () => void }) {
  const [editing, setEditing] = useState(false);
  const [name, setName] = useState(flow.name);
  const navigate = useNavigate();
  const rename = async () => {
    setEditing(false);
    if (name.trim() && name !== flow.name) {
      await flowsApi.update(flow.id, { name: name.trim() });
      onChanged();
    } else setName(flow.name);
  };
  const exportFlow = async () => {
    const data = await flowsApi.exportJson(flow.id);
    downloadText(`${flow.name.replace(/[^\w-]+/g, '_')}.flow.json`, JSON.stringify(data, null, 2));
  };
  return (
    <tr className="flow-row" data-flow-id={flow.id}>
      <td>
        {editing ? (
          <input
            className="inline-input"
            value={name}
            autoFocus
            onChange={(e) => setName(e.target.value)}
            onBlur={() => fire(rename())}
            onKeyDown={(e) => {
              if (e.key === 'Enter') fire(rename());
              if (e.key === 'Escape') {
                setName(flow.name);
                setEditing(false);
              }
            }}
          />
        ) : (
          <Link to={`/flows/${flow.id}`} className="flow-name">
            {flow.name}
          </Link>
        )}
        {flow.description && <div className="muted small">{flow.description}</div>}
      </td>
      <td className="num">{flow.definition?.nodes?.length ?? 0}</td>
      <td className="num">v{flow.version}</td>
      <td className="muted">{timeAgo(flow.updated_at)}</td>
      <td className="actions">
        <button className="btn sm" onClick={() => navigate(`/flows/${flow.id}`)}>
          Open
        </button>
        {canWrite && (
          <button className="btn sm ghost" onClick={() => setEditing(true)}>
            Rename
          </button>
        )}
        {canWrite && (
          <button
            className="btn sm ghost"
            onClick={() => fire(flowsApi.duplicate(flow.id).then(onChanged))}
          >
            Duplicate
          </button>
        )}
        <button className="btn sm ghost" onClick={() => fire(exportFlow())}>
          Export
        </button>
        {canWrite && (
          <button
            className="btn sm ghost danger"
            onClick={() => {
              if (confirm(`Delete "${flow.name}"? Its runs stay in history.`)) {
                fire(flowsApi.remove(flow.id).then(onChanged));
              }
            }}
          >
            Delete
          </button>
        )}
      </td>
    </tr>
  );
}

export function FlowsPage() {
  const [items, setItems] = useState<Flow[] | null>(null);
  const [query, setQuery] = useState('');
  const [error, setError] = useState<string | null>(null);
  const canWrite = useAuth((s) => s.can('flows:write'));
  const navigate = useNavigate();
  const fileRef = useRef<HTMLInputElement>(null);

  const reload = () =>
    flowsApi
      .list()
      .then(setItems)
      .catch((e: unknown) => setError(errorText(e)));
  useEffect(() => {
    fire(reload());
  }, []);

  const shown = useMemo(() => {
    const q = query.trim().toLowerCase();
    return (items ?? []).filter(
      (f) => !q || f.name.toLowerCase().includes(q) || f.description.toLowerCase().includes(q),
    );
  }, [items, query]);

  const create = async () => {
    const flow = await flowsApi.create(`Untitled flow ${(items?.length ?? 0) + 1}`, STARTER);
    navigate(`/flows/${flow.id}`);
  };

  const importFile = async (file: File) => {
    setError(null);
    try {
      const parsed = JSON.parse(await file.text()) as Partial<FlowExport> & Partial<FlowDefinition>;
      const data: FlowExport = parsed.definition
        ? { name: parsed.name ?? file.name, description: parsed.description ?? '', definition: parsed.definition }
        : { name: file.name.replace(/\.json$/, ''), description: '', definition: { ...asFlowDefinition(parsed) } };
      const flow = await flowsApi.importJson(data);
      navigate(`/flows/${flow.id}`);
    } catch (err) {
      setError(err instanceof ApiError ? `Import refused: ${err.detail ?? err.title}` : `Import failed: ${errorText(err)}`);
    }
  };

  return (
    <div className="page">
      <div className="page-head">
        <div>
          <h1>Flows</h1>
          <p className="muted">Design durable workflows; every save is a new version.</p>
        </div>
        <div className="row gap">
          <input
            className="search"
            placeholder="Search flows…"
            value={query}
            onChange={(e) => setQuery(e.target.value)}
            aria-label="Search flows"
          />
          {canWrite && (
            <>
              <button className="btn" onClick={() => fileRef.current?.click()}>
                Import JSON
              </button>
              <input
                ref={fileRef}
                type="file"
                accept="application/json,.json"
                hidden
                data-testid="import-file"
                onChange={(e) => {
                  const f = e.target.files?.[0];
                  if (f) fire(importFile(f));
                  e.target.value = '';
                }}
              />
              <button className="btn primary" onClick={() => fire(create())} data-testid="new-flow">
                + New flow
              </button>
            </>
          )}
        </div>
      </div>
      {error && <div className="alert error">{error}</div>}
      <div className="card">
        {items === null ? (
          <div className="empty">Loading…</div>
        ) : shown.length === 0 ? (
          <div className="empty">
            {items.length === 0 ? 'No flows yet — create your first one.' : 'No flow matches your search.'}
          </div>
        ) : (
          <table className="table">
            <thead>
              <tr>
                <th>Name</th>
                <th className="num">Nodes</th>
                <th className="num">Version</th>
                <th>Updated</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {shown.map((f) => (
                <FlowRow key={f.id} flow={f} canWrite={canWrite} onChanged={() => fire(reload())} />
              ))}
            </tbody>
          </table>
        )}
      </div>
    </div>
  );
}
