// Ops dashboard (permission ops:read): polls GET /api/v1/ops/stats every 3 s and draws runs by
// state (donut), throughput over time (stacked bars), p50/p95 durations per flow and per node
// type, top failing nodes, queue depth (broker + live steps, with a client-side sparkline) and the
// workers/orchestrators with their heartbeats (table `processes`). Admins see every run.
import { useEffect, useState } from 'react';
import { Link } from 'react-router-dom';
import { ops } from '../api/endpoints';
import type { OpsStats } from '../api/types';
import { Donut, RangeBars, Sparkline, StackedBars } from '../panels/charts';
import { liveNote, timeAgo } from '../lib/download';
import { useAuth } from '../stores/auth';
import { STATUS_COLORS } from '../stores/runState';
import { fire } from '../lib/fire';
import { errorText } from '../api/errors';

const WINDOWS: [number, number, string][] = [
  [15, 30, '15 min'],
  [60, 60, '1 h'],
  [360, 300, '6 h'],
  [1440, 1200, '24 h'],
];

function heartbeatClass(age: number): string {
  return age < 10 ? 'ok' : age < 60 ? 'late' : 'dead';
}

export function OpsPage() {
  const can = useAuth((s) => s.can);
  const [win, setWin] = useState(1);
  const [stats, setStats] = useState<OpsStats | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [updated, setUpdated] = useState<Date | null>(null);
  const [depthHistory, setDepthHistory] = useState<number[]>([]);

  useEffect(() => {
    if (!can('ops:read')) return;
    let stop = false;
    const [minutes, bucket] = WINDOWS[win];
    const tick = async () => {
      try {
        const s = await ops.stats(minutes, bucket);
        if (stop) return;
        const live = (s.queue_depth ?? 0) + (s.steps_by_status.ready ?? 0);
        setDepthHistory((h) => [...h, live].slice(-60));
        setStats(s);
        setUpdated(new Date());
        setError(null);
      } catch (err) {
        if (!stop) setError(errorText(err));
      }
    };
    fire(tick());
    const t = setInterval(() => fire(tick()), 3000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, [win, can]);

  if (!can('ops:read')) return <div className="page"><div className="alert error">You need the ops:read permission.</div></div>;
  const workers = stats?.processes ?? [];
  const liveWorkers = workers.filter((p) => p.kind === 'worker' && p.heartbeat_age_s < 10).length;
  const bars = (stats?.throughput ?? []).map((b) => ({
    label: new Date(b.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }),
    values: { succeeded: b.succeeded, failed: b.failed, cancelled: b.cancelled },
  }));
  const finished = bars.reduce((a, b) => a + b.values.succeeded + b.values.failed + b.values.cancelled, 0);

  return (
    <div className="page ops">
      <div className="page-head">
        <div>
          <h1>Operations</h1>
          <p className="muted">
            {stats?.scope === 'all' ? 'All runs' : 'Your runs'} · {liveNote(3, updated)}
          </p>
        </div>
        <div className="seg">
          {WINDOWS.map(([, , label], i) => (
            <button key={label} className={win === i ? 'active' : ''} onClick={() => setWin(i)}>
              {label}
            </button>
          ))}
        </div>
      </div>
      {error && <div className="alert error">{error}</div>}
      {!stats ? (
        <div className="empty">Loading…</div>
      ) : (
        <>
          <div className="kpis">
            <div className="kpi">
              <span className="kpi-label">Finished in window</span>
              <span className="kpi-value">{finished}</span>
            </div>
            <div className="kpi">
              <span className="kpi-label">Live runs</span>
              <span className="kpi-value">{(stats.runs_by_status.queued ?? 0) + (stats.runs_by_status.running ?? 0) + (stats.runs_by_status.waiting ?? 0)}</span>
            </div>
            <div className="kpi">
              <span className="kpi-label">Queue depth (broker)</span>
              <span className="kpi-value" data-testid="queue-depth">{stats.queue_depth ?? '—'}</span>
              <Sparkline points={depthHistory} />
            </div>
            <div className="kpi">
              <span className="kpi-label">Steps ready · running · waiting · retrying</span>
              <span className="kpi-value small-value">
                {stats.steps_by_status.ready ?? 0} · {stats.steps_by_status.running ?? 0} · {stats.steps_by_status.waiting ?? 0} ·{' '}
                {stats.steps_by_status.retrying ?? 0}
              </span>
            </div>
            <div className="kpi">
              <span className="kpi-label">Workers alive</span>
              <span className="kpi-value">{liveWorkers}</span>
            </div>
          </div>
          <div className="grid-2-1">
            <section className="card pad">
              <h3>Throughput</h3>
              <StackedBars
                data={bars}
                series={[
                  { key: 'succeeded', color: STATUS_COLORS.succeeded },
                  { key: 'failed', color: STATUS_COLORS.failed },
                  { key: 'cancelled', color: STATUS_COLORS.cancelled },
                ]}
              />
            </section>
            <section className="card pad">
              <h3>Runs by state</h3>
              <Donut values={stats.runs_by_status} colors={STATUS_COLORS} />
            </section>
          </div>
          <div className="grid-2">
            <section className="card pad">
              <h3>Run duration per flow <span className="muted small">p50 / p95</span></h3>
              <RangeBars rows={stats.flow_durations.map((f) => ({ label: f.name, p50: f.p50_s, p95: f.p95_s, n: f.runs }))} />
            </section>
            <section className="card pad">
              <h3>Step duration per node type <span className="muted small">p50 / p95</span></h3>
              <RangeBars rows={stats.node_durations.map((n) => ({ label: n.node_type, p50: n.p50_s, p95: n.p95_s, n: n.steps }))} />
            </section>
          </div>
          <div className="grid-2">
            <section className="card pad">
              <h3>Top failing nodes</h3>
              {stats.failing_nodes.length === 0 ? (
                <div className="empty small">No failures in this window.</div>
              ) : (
                <table className="table compact">
                  <tbody>
                    {stats.failing_nodes.map((f) => (
                      <tr key={`${f.flow_id}:${f.node_id}`}>
                        <td>
                          <code>{f.node_id}</code> <span className="muted small">{f.node_type}</span>
                          <div className="muted small">
                            <Link to={`/runs?flow_id=${f.flow_id}&status=failed`}>{f.flow_name}</Link> · {f.last_error ?? ''}
                          </div>
                        </td>
                        <td className="num">
                          <span className="pill st-failed">{f.failures}</span>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </section>
            <section className="card pad">
              <h3>Processes &amp; heartbeats</h3>
              <table className="table compact" data-testid="processes">
                <thead>
                  <tr>
                    <th>Process</th>
                    <th>Started</th>
                    <th className="num">Heartbeat</th>
                  </tr>
                </thead>
                <tbody>
                  {workers.map((p) => (
                    <tr key={p.id}>
                      <td>
                        <span className={`hb ${heartbeatClass(p.heartbeat_age_s)}`} /> <strong>{p.kind}</strong>{' '}
                        {p.hostname ? (
                          <span className="muted small mono">
                            {p.hostname}:{p.pid}
                          </span>
                        ) : null}
                        <div className="muted small mono">{Object.entries(p.info).map(([k, v]) => `${k} ${String(v)}`).join(' · ')}</div>
                      </td>
                      <td className="muted">{timeAgo(p.started_at)}</td>
                      <td className="num">{p.heartbeat_age_s.toFixed(1)} s ago</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </section>
          </div>
        </>
      )}
    </div>
  );
}
