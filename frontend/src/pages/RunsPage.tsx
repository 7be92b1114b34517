// Run history: GET /api/v1/runs with filters (flow, status) and cursor paging ("Load more").
// Each row links to the replay page (/runs/:id). Auto-refreshes every 5 s while any listed run
// is still live, re-reading as many rows as are shown so pages loaded with "Load more" stay
// (lib/pages.ts). A filter change aborts the requests of the old filter. Flow names come from
// GET /api/v1/flows.
import { useCallback, useEffect, useRef, useState } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { flows as flowsApi, runs as runsApi } from '../api/endpoints';
import { describeError, isAbort } from '../api/errors';
import type { Flow, Run } from '../api/types';
import { mergeRefresh, refreshLimit } from '../lib/pages';
import { durationBetween, fmtDuration, timeAgo } from '../lib/download';
import { fire } from '../lib/fire';

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
  const abortRef = useRef<AbortController | null>(null);
  const shown = useRef<{ items: Run[] | null; cursor: string | null }>({ items: null, cursor: null });
  useEffect(() => {
    shown.current = { items, cursor }; // read by refresh() after renders, never during one
  });
  const filterKey = `${flowId}|${status}`;
  const [shownFilter, setShownFilter] = useState(filterKey);
  if (shownFilter !== filterKey) {
    // a new filter: the old rows go at once (while rendering), the old requests are aborted below
    setShownFilter(filterKey);
    setItems(null);
    setCursor(null);
  }

  const filter = useCallback((limit: number, more: string | null) => ({ flow_id: flowId || undefined, status: status || undefined, limit, cursor: more }), [flowId, status]);

  /** Runs a request under the current filter's AbortController; a stale answer is dropped. */
  const run = useCallback(async (fn: (s: AbortSignal) => Promise<void>) => {
    const signal = abortRef.current?.signal;
    if (!signal) return;
    try {
      await fn(signal);
      setError(null);
    } catch (err) {
      if (!signal.aborted && !isAbort(err)) setError(describeError(err));
    }
  }, []);

  const loadMore = (more: string) =>
    run(async (s) => {
      const page = await runsApi.list(filter(50, more), s);
      if (s.aborted) return;
      setItems((prev) => [...(prev ?? []), ...page.items.filter((r) => !prev?.some((p) => p.id === r.id))]);
      setCursor(page.next_cursor);
    });

  /** Re-reads the head of the list (as many rows as shown); loaded pages are kept. */
  const refresh = useCallback(
    () =>
      run(async (s) => {
        const limit = refreshLimit(shown.current.items?.length ?? 0);
        const page = await runsApi.list(filter(limit, null), s);
        if (s.aborted) return;
        const merged = mergeRefresh(shown.current.items, shown.current.cursor, page, limit);
        setItems(merged.items);
        setCursor(merged.cursor);
      }),
    [run, filter],
  );

  useEffect(() => {
    const abort = new AbortController();
    flowsApi
      .list()
      .then((l) => !abort.signal.aborted && setFlowList(l))
      .catch((err: unknown) => !abort.signal.aborted && setError(describeError(err)));
    return () => abort.abort();
  }, []);
  // One AbortController per filter: changing the filter drops every answer of the old one.
  useEffect(() => {
    const abort = new AbortController();
    abortRef.current = abort;
    fire(refresh());
    return () => abort.abort();
  }, [refresh]);
  const live = !!items?.some((r) => ['queued', 'running', 'waiting'].includes(r.status));
  useEffect(() => {
    if (!live) return;
    const t = setInterval(() => fire(refresh()), 5000);
    return () => clearInterval(t);
  }, [live, refresh]);

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
          <button className="btn" onClick={() => fire(refresh())}>
            Refresh
          </button>
        </div>
      </div>
      {error && (
        <div className="alert error" role="alert">
          {error}{' '}
          <button className="btn sm" onClick={() => fire(refresh())}>
            Retry
          </button>
        </div>
      )}
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
            <button className="btn" onClick={() => fire(loadMore(cursor))} data-testid="load-more">
              Load more
            </button>
          </div>
        )}
      </div>
    </div>
  );
}
