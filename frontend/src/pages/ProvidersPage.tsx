// Providers (admins only, issue 12): the LLM providers (base URL + API key) with their cluster-wide
// limits and live usage. GET /api/v1/providers is polled every POLL_MS through lib/poll.ts (paused
// while the tab is hidden, never two requests at once, a stale answer dropped after a change) and
// drawn as a table: in flight vs effective vs max concurrency as a bar (with the limit its 429s
// revealed, `learned_limit`), requests and tokens of the last minute against RPM/TPM, 429s (total,
// last one) and parked steps. Rows open an edit form for
// the label and limits (ProviderForms.tsx, PATCH), a form adds one (POST), Delete asks first.
// Non-admins (and an API answering 403) see why the page is empty; a 404 says the server has no
// providers API. Formatting and validation live in lib/providers.ts.
import { useEffect, useRef, useState } from 'react';
import { providers as providersApi } from '../api/endpoints';
import { describeError, isAbort } from '../api/errors';
import { ApiError } from '../api/http';
import type { Provider } from '../api/types';
import { liveNote } from '../lib/download';
import { fire } from '../lib/fire';
import { startPoll, type Poller } from '../lib/poll';
import {
  concurrencyBar,
  concurrencyText,
  fmtCount,
  providerName,
  throttledText,
  usageLevel,
  usageRatio,
  usageText,
} from '../lib/providers';
import { useAuth } from '../stores/auth';
import { notify } from '../stores/notices';
import { CreateProviderForm, EditProviderForm } from './ProviderForms';

export const POLL_MS = 3000;
const COLUMNS = 7;

export const FORBIDDEN_TEXT = 'Only administrators can see and change providers. Ask an administrator to set provider limits.';

function Denied({ text }: { text: string }) {
  return (
    <div className="page">
      <h1>Providers</h1>
      <div className="alert error" role="alert" data-testid="providers-denied">
        {text}
      </div>
    </div>
  );
}

function ConcurrencyCell({ p }: { p: Provider }) {
  const bar = concurrencyBar(p);
  const text = concurrencyText(p);
  return (
    <div className="usage" title={text}>
      <div className={`cbar lvl-${bar.level}`} aria-hidden>
        <div className="cbar-fill" style={{ width: `${bar.inFlightPct}%` }} />
        <div className="cbar-mark" style={{ left: `${bar.effectivePct}%` }} />
      </div>
      <span className="small">{text}</span>
    </div>
  );
}

function RateCell({ used, limit }: { used: number; limit: number | null }) {
  const ratio = usageRatio(used, limit);
  return (
    <div className="usage">
      {ratio !== null && (
        <div className={`cbar lvl-${usageLevel(ratio)}`} aria-hidden>
          <div className="cbar-fill" style={{ width: `${ratio * 100}%` }} />
        </div>
      )}
      <span className="small">{usageText(used, limit)}</span>
    </div>
  );
}

export function ProvidersPage() {
  const isAdmin = useAuth((s) => s.isAdmin());
  const [items, setItems] = useState<Provider[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [denied, setDenied] = useState<string | null>(null);
  const [updated, setUpdated] = useState<Date | null>(null);
  const [creating, setCreating] = useState(false);
  const [editing, setEditing] = useState<string | null>(null);
  const poller = useRef<Poller | null>(null);

  useEffect(() => {
    if (!isAdmin) return;
    const p = startPoll(
      async (signal) => {
        try {
          const list = await providersApi.list(signal);
          if (signal.aborted) return;
          setItems(list);
          setUpdated(new Date());
          setError(null);
        } catch (err) {
          if (signal.aborted || isAbort(err)) return;
          if (err instanceof ApiError && (err.status === 403 || err.status === 404)) {
            setDenied(err.status === 403 ? FORBIDDEN_TEXT : 'This server has no providers API (GET /api/v1/providers answered 404).');
            return 'stop';
          }
          setError(describeError(err)); // transient: the next tick tries again
        }
      },
      { intervalMs: POLL_MS },
    );
    poller.current = p;
    return () => {
      p.stop();
      poller.current = null;
    };
  }, [isAdmin]);

  if (!isAdmin) return <Denied text={FORBIDDEN_TEXT} />;
  if (denied) return <Denied text={denied} />;

  const closeEdit = (id: string) => {
    setEditing(null); // the keyboard focus goes back to the row's Edit button
    requestAnimationFrame(() => document.querySelector<HTMLElement>(`[data-edit-for="${id}"]`)?.focus());
  };
  const replace = (p: Provider) => setItems((list) => (list ?? []).map((x) => (x.id === p.id ? p : x)));
  const remove = async (p: Provider) => {
    if (!confirm(`Delete provider "${providerName(p)}" (${p.base_url})? Its limits are dropped; its next call registers it again without limits.`)) return;
    try {
      await providersApi.remove(p.id);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) throw err; // already gone: same outcome
    }
    setItems((list) => (list ?? []).filter((x) => x.id !== p.id));
    if (editing === p.id) setEditing(null);
    notify(`Deleted provider ${providerName(p)}`, { kind: 'success' });
    poller.current?.refresh();
  };

  return (
    <div className="page providers">
      <div className="page-head">
        <div>
          <h1>Providers</h1>
          <p className="muted">
            Limits hold across every worker · {liveNote(POLL_MS / 1000, updated)}
          </p>
        </div>
        {!creating && (
          <button className="btn primary" onClick={() => setCreating(true)} data-testid="provider-add">
            Add provider
          </button>
        )}
      </div>
      {creating && (
        <CreateProviderForm
          onCancel={() => setCreating(false)}
          onCreated={(p) => {
            setCreating(false);
            setItems((list) => [...(list ?? []).filter((x) => x.id !== p.id), p]);
            notify(`Added provider ${providerName(p)}`, { kind: 'success' });
            poller.current?.refresh();
          }}
        />
      )}
      {error && (
        <div className="alert error" role="alert">
          {error}
        </div>
      )}
      {!items ? (
        <div className="empty">Loading…</div>
      ) : items.length === 0 ? (
        <div className="card empty">No providers yet. A provider appears here on its first LLM call (limited adaptively from its 429s); add one to set its limits ahead of that.</div>
      ) : (
        <div className="card">
          <table className="table providers-table" data-testid="providers">
            <caption className="sr-only">Providers with their limits and usage over the last minute</caption>
            <thead>
              <tr>
                <th scope="col">Provider</th>
                <th scope="col">Concurrency</th>
                <th scope="col">Requests (last min)</th>
                <th scope="col">Tokens (last min)</th>
                <th scope="col" className="num">429s</th>
                <th scope="col" className="num">Parked</th>
                <th scope="col">
                  <span className="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {items.map((p) => {
                const open = editing === p.id;
                const formId = `provider-edit-${p.id}`;
                return [
                  <tr key={p.id} data-provider-id={p.id}>
                    <td>
                      <div className="flow-name">{p.label ?? providerName(p)}</div>
                      <div className="muted small mono">{p.base_url}</div>
                      <div className="muted small">{p.key_fingerprint ? <>key <span className="mono">{p.key_fingerprint}</span></> : 'no key'}</div>
                    </td>
                    <td>
                      <ConcurrencyCell p={p} />
                    </td>
                    <td>
                      <RateCell used={p.requests_last_minute} limit={p.rpm} />
                    </td>
                    <td>
                      <RateCell used={p.tokens_last_minute} limit={p.tpm} />
                    </td>
                    <td className="num">
                      <span className={p.throttled_total ? 'pill st-retrying' : 'pill'}>{fmtCount(p.throttled_total)}</span>
                      <div className="muted small">{throttledText(p)}</div>
                    </td>
                    <td className="num">{fmtCount(p.parked)}</td>
                    <td className="actions">
                      <button
                        className="btn sm"
                        aria-expanded={open}
                        aria-controls={open ? formId : undefined}
                        aria-label={`Edit limits of ${providerName(p)}`}
                        data-edit-for={p.id}
                        onClick={() => setEditing(open ? null : p.id)}
                      >
                        Edit
                      </button>{' '}
                      <button className="btn sm ghost danger" aria-label={`Delete provider ${providerName(p)}`} onClick={() => fire(remove(p))}>
                        Delete
                      </button>
                    </td>
                  </tr>,
                  open && (
                    <tr key={`${p.id}-edit`} id={formId} className="edit-row">
                      <td colSpan={COLUMNS}>
                        <EditProviderForm
                          provider={p}
                          onCancel={() => closeEdit(p.id)}
                          onSaved={(saved) => {
                            replace(saved);
                            closeEdit(p.id);
                            notify(`Saved limits of ${providerName(saved)}`, { kind: 'success' });
                            poller.current?.refresh();
                          }}
                        />
                      </td>
                    </tr>
                  ),
                ];
              })}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}
