// Run history: GET /api/v1/runs with filters (flow, status) and cursor paging ("Load more").
// Each row links to the replay page (/runs/:id). Auto-refreshes every 5 s while any listed run
// is still live. Flow names come from GET /api/v1/flows.
import { useCallback, useEffect, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { flows as flowsApi, runs as runsApi } from '../api/endpoints';
import type { Flow, Run } from '../api/types';
import { durationBetween, fmtDuration, timeAgo } from '../lib/download';

const STATUSES = ['', 'queued', 'running', 'waiting', 'succeeded', 'failed', 'cancelled'];

export function StatusPill({ status }: { status: string }) {
  return <span className={`pill st-${status}`}>{status}</span>;
}

export function RunsPage() {
  const [params, setParams] = useSearchParams();
  const flowId = params.get('flow_id') ?? '';
  const status = params.get('status') ?? '';
  const [flowList, setFlowList] = useState<Flow[]>([]);
  const [items, setItems] = useState<Run[] | null>(null);
  const [cursor, setCursor] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(
    async (more: string | null) => {
      try {
        const page = await runsApi.list({ flow_id: flowId || undefined, status: status || undefined, limit: 50, cursor: more });
        setItems((prev) => (more && prev ? [...prev, ...page.items] : page.items));
        setCursor(page.next_cursor);
      } catch (err) {
        setError(String(err));
      }
    },
    [flowId, status],
  );

  useEffect(() => {
    flowsApi.list().then(setFlowList).catch(() => undefined);
  }, []);
  useEffect(() => {
    setItems(null);
    void load(null);
  }, [load]);
  useEffect(() => {
    if (!items?.some((r) => ['queued', 'running', 'waiting'].includes(r.status))) return;
    const t = setInterval(() => void load(null), 5000);
    return () => clearInterval(t);
  }, [items, load]);

  const names = Object.fromEntries(flowList.map((f) => [f.id, f.name]));
  const setFilter = (k: string, v: string) => {
    const next = new URLSearchParams(params);
    if (v) next.set(k, v);
    else next.delete(k);
    setParams(next);
  };

  return (
    <div className="page">
      <div className="page-head">
        <div>
          <h1>Runs</h1>
          <p className="muted">Every run is durable: open one to replay it step by step, resume or fork it.</p>
        </div>
        <div className="row gap">
          <select value={flowId} onChange={(e) => setFilter('flow_id', e.target.value)} aria-label="Filter by flow">
            <option value="">All flows</option>
            {flowList.map((f) => (
              <option key={f.id} value={f.id}>
                {f.name}
              </option>
            ))}
          </select>
          <select value={status} onChange={(e) => setFilter('status', e.target.value)} aria-label="Filter by status">
            {STATUSES.map((s) => (
              <option key={s} value={s}>
                {s || 'Any status'}
              </option>
            ))}
          </select>
          <button className="btn" onClick={() => void load(null)}>
            Refresh
          </button>
        </div>
      </div>
      {error && <div className="alert error">{error}</div>}
      <div className="card">
        {items === null ? (
          <div className="empty">Loading…</div>
        ) : items.length === 0 ? (
          <div className="empty">No runs match.</div>
        ) : (
          <table className="table">
            <thead>
              <tr>
                <th>Run</th>
                <th>Flow</th>
                <th>Status</th>
                <th>Started</th>
                <th className="num">Duration</th>
                <th>Lineage</th>
              </tr>
            </thead>
            <tbody>
              {items.map((r) => (
                <tr key={r.id} data-run-id={r.id}>
                  <td>
                    <Link to={`/runs/${r.id}`} className="mono">
                      {r.id.slice(0, 8)}
                    </Link>
                  </td>
                  <td>
                    {names[r.flow_id] ?? <span className="muted">{r.flow_id.slice(0, 8)}</span>} <span className="muted small">v{r.flow_version}</span>
                  </td>
                  <td>
                    <StatusPill status={r.status} />
                  </td>
                  <td className="muted">{timeAgo(r.created_at)}</td>
                  <td className="num">{fmtDuration(durationBetween(r.started_at ?? r.created_at, r.finished_at))}</td>
                  <td className="muted small">
                    {r.parent_run_id ? (
                      <>
                        fork of <Link to={`/runs/${r.parent_run_id}`}>{r.parent_run_id.slice(0, 8)}</Link> @ {r.fork_of_node}
                      </>
                    ) : r.batch_id ? (
                      `batch ${r.batch_id.slice(0, 8)}`
                    ) : (
                      ''
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {cursor && (
          <div className="center pad">
            <button className="btn" onClick={() => void load(cursor)}>
              Load more
            </button>
          </div>
        )}
      </div>
    </div>
  );
}
