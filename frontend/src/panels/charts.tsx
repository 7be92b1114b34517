// Small hand-drawn SVG charts for the ops dashboard (no chart library): `StackedBars` (throughput
// over time), `Donut` (runs by state), `RangeBars` (p50/p95 durations per flow or node) and
// `Sparkline` (queue depth history). Pure components: data in, SVG out.
import { fmtDuration } from '../lib/download';

export interface Series {
  key: string;
  color: string;
}

export function StackedBars({ data, series, height = 160 }: { data: { label: string; values: Record<string, number> }[]; series: Series[]; height?: number }) {
  const W = 600;
  const H = height;
  const pad = { l: 32, r: 8, t: 8, b: 20 };
  const max = Math.max(1, ...data.map((d) => series.reduce((a, s) => a + (d.values[s.key] ?? 0), 0)));
  const bw = (W - pad.l - pad.r) / Math.max(1, data.length);
  const y = (v: number) => pad.t + (H - pad.t - pad.b) * (1 - v / max);
  const ticks = [0, Math.ceil(max / 2), max];
  return (
    <svg viewBox={`0 0 ${W} ${H}`} className="chart" role="img" aria-label="throughput chart">
      {ticks.map((t) => (
        <g key={t}>
          <line x1={pad.l} x2={W - pad.r} y1={y(t)} y2={y(t)} className="grid" />
          <text x={pad.l - 6} y={y(t) + 3} className="axis" textAnchor="end">
            {t}
          </text>
        </g>
      ))}
      {data.map((d, i) => {
        let acc = 0;
        return (
          <g key={i}>
            {series.map((s) => {
              const v = d.values[s.key] ?? 0;
              if (!v) return null;
              const top = y(acc + v);
              const rect = <rect key={s.key} x={pad.l + i * bw + 1} y={top} width={Math.max(1, bw - 2)} height={y(acc) - top} fill={s.color} rx={1.5}><title>{`${d.label} ${s.key}: ${v}`}</title></rect>;
              acc += v;
              return rect;
            })}
          </g>
        );
      })}
      {data.map((d, i) =>
        i % Math.max(1, Math.ceil(data.length / 6)) === 0 ? (
          <text key={i} x={pad.l + i * bw + bw / 2} y={H - 5} className="axis" textAnchor="middle">
            {d.label}
          </text>
        ) : null,
      )}
    </svg>
  );
}

export function Donut({ values, colors, size = 150 }: { values: Record<string, number>; colors: Record<string, string>; size?: number }) {
  const entries = Object.entries(values).filter(([, v]) => v > 0);
  const total = entries.reduce((a, [, v]) => a + v, 0);
  const r = size / 2 - 12;
  const c = 2 * Math.PI * r;
  let offset = 0;
  return (
    <div className="donut-wrap">
      <svg viewBox={`0 0 ${size} ${size}`} width={size} height={size} role="img" aria-label="runs by state">
        <circle cx={size / 2} cy={size / 2} r={r} fill="none" stroke="#eef2f7" strokeWidth={18} />
        {entries.map(([k, v]) => {
          const len = (v / total) * c;
          const el = (
            <circle
              key={k}
              cx={size / 2}
              cy={size / 2}
              r={r}
              fill="none"
              stroke={colors[k] ?? '#94a3b8'}
              strokeWidth={18}
              strokeDasharray={`${len} ${c - len}`}
              strokeDashoffset={-offset}
              transform={`rotate(-90 ${size / 2} ${size / 2})`}
            >
              <title>{`${k}: ${v}`}</title>
            </circle>
          );
          offset += len;
          return el;
        })}
        <text x="50%" y="48%" textAnchor="middle" className="donut-total">
          {total}
        </text>
        <text x="50%" y="62%" textAnchor="middle" className="axis">
          runs
        </text>
      </svg>
      <ul className="legend vertical">
        {entries.map(([k, v]) => (
          <li key={k}>
            <i style={{ background: colors[k] ?? '#94a3b8' }} /> {k} <strong>{v}</strong>
          </li>
        ))}
      </ul>
    </div>
  );
}

export function RangeBars({ rows }: { rows: { label: string; p50: number; p95: number; n: number }[] }) {
  const max = Math.max(0.001, ...rows.map((r) => r.p95));
  if (!rows.length) return <div className="empty small">No finished work in this window.</div>;
  return (
    <div className="range-bars">
      {rows.map((r) => (
        <div key={r.label} className="range-row">
          <span className="range-label" title={r.label}>
            {r.label}
          </span>
          <span className="range-track">
            <span className="p95" style={{ width: `${(r.p95 / max) * 100}%` }} />
            <span className="p50" style={{ width: `${(r.p50 / max) * 100}%` }} />
          </span>
          <span className="range-vals mono small">
            {fmtDuration(r.p50)} / {fmtDuration(r.p95)} <span className="muted">·{r.n}</span>
          </span>
        </div>
      ))}
    </div>
  );
}

export function Sparkline({ points, color = '#6366f1', height = 48 }: { points: number[]; color?: string; height?: number }) {
  const W = 240;
  const max = Math.max(1, ...points);
  const step = W / Math.max(1, points.length - 1);
  const d = points.map((p, i) => `${i ? 'L' : 'M'}${(i * step).toFixed(1)},${(height - 4 - (p / max) * (height - 8)).toFixed(1)}`).join(' ');
  return (
    <svg viewBox={`0 0 ${W} ${height}`} className="sparkline" preserveAspectRatio="none" role="img" aria-label="trend">
      {points.length > 1 && <path d={`${d} L${W},${height} L0,${height} Z`} fill={color} opacity={0.12} />}
      {points.length > 1 && <path d={d} fill="none" stroke={color} strokeWidth={2} />}
    </svg>
  );
}
