// Batch runs: upload a JSONL / CSV / JSON-list file (POST /api/v1/flows/{id}/batches, raw body
// typed by extension), then poll GET /api/v1/batches/{id} every second for {status,total,counts}
// (a stacked progress bar with counts per state) and download GET /batches/{id}/results (JSONL).
// The current batch lives in stores/panels.ts (per flow), so switching tabs keeps its progress and
// polling resumes on return. The dropzone is a keyboard-reachable button (Enter/Space opens the
// file chooser); failures are described by api/errors.ts.
import { useEffect, useRef, useState } from 'react';
import { batches } from '../api/endpoints';
import { describeError, errorText } from '../api/errors';
import { ApiError } from '../api/http';
import type { BatchStatus } from '../api/types';
import { downloadText } from '../lib/download';
import { useGraph } from '../stores/graph';
import { usePanels, useFlowPanels } from '../stores/panels';
import { STATUS_COLORS } from '../stores/runState';
import { fire } from '../lib/fire';

const ORDER = ['succeeded', 'failed', 'cancelled', 'running', 'waiting', 'queued'];
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export function contentTypeFor(name: string): string {
  if (/\.csv$/i.test(name)) return 'text/csv';
  if (/\.jsonl$|\.ndjson$/i.test(name)) return 'application/x-ndjson';
  return 'application/json';
}

export function BatchProgress({ batch }: { batch: BatchStatus }) {
  const total = Math.max(1, batch.total);
  const counts: Record<string, number> = { ...batch.counts };
  const keys = ORDER.filter((k) => counts[k]);
  const done = counts.succeeded + counts.failed + counts.cancelled;
  const pct = batch.progress * 100;
  return (
    <div className="batch-progress" data-testid="batch-progress" data-status={batch.status}>
      <div className="row between small">
        <span>
          <strong>{batch.status}</strong> · {done}/{batch.total} done
        </span>
        <span>{pct.toFixed(0)}%</span>
      </div>
      <div className="stacked-bar" role="progressbar" aria-label="Batch progress" aria-valuenow={Math.round(pct)} aria-valuemin={0} aria-valuemax={100}>
        {keys.map((k) => (
          <span key={k} style={{ width: `${(counts[k] / total) * 100}%`, background: STATUS_COLORS[k] ?? '#94a3b8' }} title={`${k}: ${counts[k]}`} />
        ))}
      </div>
      <div className="legend">
        {keys.map((k) => (
          <span key={k}>
            <i style={{ background: STATUS_COLORS[k] ?? '#94a3b8' }} /> {k} {counts[k]}
          </span>
        ))}
      </div>
    </div>
  );
}

export function BatchPanel({ flowId, ensureSaved, canRun }: { flowId: string; ensureSaved: () => Promise<boolean>; canRun: boolean }) {
  const { batchId, batch } = useFlowPanels(flowId);
  const setBatchId = (id: string | null) => usePanels.getState().patch(flowId, { batchId: id });
  const setBatch = (b: BatchStatus | null) => usePanels.getState().patch(flowId, { batch: b });
  const [error, setError] = useState<string | null>(null);
  const fileRef = useRef<HTMLInputElement>(null);

  useEffect(() => {
    if (!batchId) return;
    let stop = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      try {
        const b = await batches.get(batchId);
        if (stop) return;
        usePanels.getState().patch(flowId, { batch: b });
        if (!TERMINAL.has(b.status)) timer = setTimeout(() => fire(tick()), 1000);
      } catch (err) {
        if (!stop) setError(describeError(err));
      }
    };
    fire(tick());
    return () => {
      stop = true;
      clearTimeout(timer);
    };
  }, [batchId, flowId]);

  const upload = async (file: File) => {
    setError(null);
    setBatch(null);
    if (!(await ensureSaved())) return;
    try {
      const created = await batches.create(flowId, file, contentTypeFor(file.name), useGraph.getState().version);
      setBatchId(created.id);
    } catch (err) {
      setError(
        err instanceof ApiError && (err.status === 404 || err.status === 405)
          ? 'This server has no batch endpoint.'
          : errorText(err),
      );
    }
  };

  return (
    <div className="panel-body">
      <h3>Batch run</h3>
      <p className="muted small">
        One run per line: JSONL objects, CSV rows (header = input names) or a JSON list. Each item is a durable run of the saved version.
      </p>
      {canRun ? (
        <div
          className="dropzone"
          role="button"
          tabIndex={0}
          data-testid="batch-dropzone"
          onClick={(e) => {
            if (e.target !== fileRef.current) fileRef.current?.click(); // the input's own click bubbles here
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' || e.key === ' ') {
              e.preventDefault();
              fileRef.current?.click();
            }
          }}
          onDragOver={(e) => e.preventDefault()}
          onDrop={(e) => {
            e.preventDefault();
            const f = e.dataTransfer.files[0];
            if (f) fire(upload(f));
          }}
        >
          <strong>Drop a .jsonl / .csv file</strong>
          <span className="muted small">or click to choose</span>
          <input
            ref={fileRef}
            type="file"
            hidden
            tabIndex={-1}
            accept=".jsonl,.ndjson,.csv,.json"
            data-testid="batch-file"
            onChange={(e) => {
              const f = e.target.files?.[0];
              if (f) fire(upload(f));
              e.target.value = '';
            }}
          />
        </div>
      ) : (
        <p className="muted small">Your role cannot start runs.</p>
      )}
      {error && (
        <div className="alert error small" role="alert">
          {error}
        </div>
      )}
      {batch && <BatchProgress batch={batch} />}
      {batch?.error && <div className="alert error small">{JSON.stringify(batch.error)}</div>}
      {batch && batchId && (
        <button
          className="btn"
          disabled={!TERMINAL.has(batch.status) && !(batch.counts.succeeded || batch.counts.failed)}
          onClick={() =>
            fire(
              batches
                .results(batchId)
                .then((t) => downloadText(`batch-${batchId.slice(0, 8)}.jsonl`, t, 'application/x-ndjson'))
                .catch((err: unknown) => setError(describeError(err))),
            )
          }
        >
          Download results (JSONL)
        </button>
      )}
    </div>
  );
}
