// Deploy panel: the flow's API endpoints with copyable curl / Python / JavaScript snippets
// (snippets.ts) and API-key management (POST/GET/DELETE /api/v1/api-keys; a new key is shown once
// and substituted into the snippets). Key actions need the keys:write permission. The flow's
// `endpoint_name` (an alias for /run, webhooks and the OpenAI endpoint) is set here too.
import { useEffect, useState } from 'react';
import { apiKeys, flows } from '../api/endpoints';
import { API_BASE } from '../api/http';
import type { ApiKey, Flow } from '../api/types';
import { copyText, timeAgo } from '../lib/download';
import { endpointFor, snippet, type SnippetKind, type SnippetLang } from './snippets';
import { fire } from '../lib/fire';
import { errorText } from '../api/errors';

function CopyButton({ text }: { text: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      className="btn sm ghost"
      onClick={() => fire(copyText(text).then(() => (setDone(true), setTimeout(() => setDone(false), 1500))))}
    >
      {done ? 'Copied ✓' : 'Copy'}
    </button>
  );
}

interface Props {
  flowId: string;
  canManageKeys: boolean;
  flow: Flow | null;
  canPublish: boolean;
  onFlowChanged: (f: Flow) => void;
}

function EndpointName({ flow, canEdit, onFlowChanged }: { flow: Flow; canEdit: boolean; onFlowChanged: (f: Flow) => void }) {
  const [value, setValue] = useState(flow.endpoint_name ?? '');
  const [error, setError] = useState<string | null>(null);
  const save = () =>
    flows
      .update(flow.id, { endpoint_name: value.trim() || null })
      .then((f) => {
        setError(null);
        onFlowChanged(f);
      })
      .catch((e: unknown) => setError(errorText(e)));
  return (
    <div className="field" data-testid="endpoint-name">
      <label className="field-label" htmlFor={`endpoint-name-${flow.id}`}>
        Endpoint name (optional alias of the flow id)
      </label>
      <div className="row gap-sm">
        <input id={`endpoint-name-${flow.id}`} value={value} disabled={!canEdit} placeholder="e.g. support-bot" aria-invalid={!!error || undefined} onChange={(e) => setValue(e.target.value)} />
        {canEdit && (
          <button className="btn sm" disabled={value.trim() === (flow.endpoint_name ?? '')} onClick={() => fire(save())}>
            Save name
          </button>
        )}
      </div>
      {error && (
        <div className="field-error" role="alert">
          {error}
        </div>
      )}
    </div>
  );
}

function Publishing({ flow, canPublish, onFlowChanged }: { flow: Flow; canPublish: boolean; onFlowChanged: (f: Flow) => void }) {
  const [error, setError] = useState<string | null>(null);
  const published = flow.published_version ?? null;
  const act = (p: Promise<Flow>) => p.then(onFlowChanged).catch((e: unknown) => setError(errorText(e)));
  return (
    <div className="publish-box" data-testid="publishing">
      <div>
        <strong>{published ? `Published: v${published}` : 'Not published'}</strong>
        <div className="muted small">
          {published
            ? `API calls without a version run v${published}; the canvas is at v${flow.version}.`
            : `API calls run the latest saved version (v${flow.version}).`}
        </div>
      </div>
      {canPublish && (
        <div className="row gap-sm">
          {published !== flow.version && (
            <button className="btn sm primary" onClick={() => fire(act(flows.publish(flow.id, flow.version)))}>
              Publish v{flow.version}
            </button>
          )}
          {published && (
            <button className="btn sm ghost" onClick={() => fire(act(flows.unpublish(flow.id)))}>
              Unpublish
            </button>
          )}
        </div>
      )}
      {error && <div className="alert error small">{error}</div>}
    </div>
  );
}

export function DeployPanel({ flowId, canManageKeys, flow, canPublish, onFlowChanged }: Props) {
  const base = API_BASE || window.location.origin;
  const [kind, setKind] = useState<SnippetKind>('chat');
  const [lang, setLang] = useState<SnippetLang>('curl');
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [newKey, setNewKey] = useState<string | null>(null);
  const [keyName, setKeyName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const reload = () => apiKeys.list().then(setKeys).catch((e: unknown) => setError(errorText(e)));
  useEffect(() => {
    if (canManageKeys) fire(reload());
  }, [canManageKeys]);
  const code = snippet(lang, kind, base, flowId, newKey ?? undefined);

  return (
    <div className="panel-body">
      {flow && <Publishing flow={flow} canPublish={canPublish} onFlowChanged={onFlowChanged} />}
      {flow && <EndpointName key={flow.id} flow={flow} canEdit={canPublish} onFlowChanged={onFlowChanged} />}
      <h3>API endpoint</h3>
      <div className="seg">
        {(['chat', 'async'] as const).map((k) => (
          <button key={k} className={kind === k ? 'active' : ''} onClick={() => setKind(k)}>
            {k === 'chat' ? 'Chat (sync / stream)' : 'Async run'}
          </button>
        ))}
      </div>
      <div className="endpoint">
        <span className="method">POST</span>
        <code>{endpointFor(base, flowId, kind)}</code>
        <CopyButton text={endpointFor(base, flowId, kind)} />
      </div>
      <p className="muted small">
        {kind === 'chat'
          ? 'Waits for the outputs; add ?stream=true for Server-Sent Events (step events, then `end`).'
          : 'Answers 202 {id, status} at once; the same Idempotency-Key returns the same run.'}
      </p>
      <div className="tabs small">
        {(['curl', 'python', 'javascript'] as const).map((l) => (
          <button key={l} className={lang === l ? 'active' : ''} onClick={() => setLang(l)}>
            {l === 'javascript' ? 'JS' : l === 'python' ? 'Python' : 'curl'}
          </button>
        ))}
      </div>
      <div className="snippet">
        <pre data-testid="snippet">{code}</pre>
        <CopyButton text={code} />
      </div>

      <h3>API keys</h3>
      {!canManageKeys ? (
        <p className="muted small">Your role cannot manage API keys.</p>
      ) : (
        <>
          {error && <div className="alert error small">{error}</div>}
          {newKey && (
            <div className="alert success small">
              New key (shown once — store it now):
              <div className="endpoint">
                <code data-testid="new-key">{newKey}</code>
                <CopyButton text={newKey} />
              </div>
            </div>
          )}
          <form
            className="row gap-sm"
            onSubmit={(e) => {
              e.preventDefault();
              if (!keyName.trim()) return;
              apiKeys
                .create(keyName.trim())
                .then((k) => {
                  setNewKey(k.key);
                  setKeyName('');
                  return reload();
                })
                .catch((err: unknown) => setError(errorText(err)));
            }}
          >
            <input placeholder="Key name, e.g. website" value={keyName} onChange={(e) => setKeyName(e.target.value)} aria-label="API key name" />
            <button className="btn primary" type="submit">
              Create key
            </button>
          </form>
          <ul className="key-list">
            {keys.filter((k) => !k.revoked).map((k) => (
              <li key={k.id}>
                <div>
                  <strong>{k.name}</strong> <code className="muted">{k.prefix}…</code>
                  <div className="muted small">
                    created {timeAgo(k.created_at)} · last used {timeAgo(k.last_used_at)}
                  </div>
                </div>
                <button
                  className="btn sm ghost danger"
                  onClick={() => confirm(`Revoke key "${k.name}"?`) && fire(apiKeys.revoke(k.id).then(reload))}
                >
                  Revoke
                </button>
              </li>
            ))}
            {keys.filter((k) => !k.revoked).length === 0 && <li className="muted small">No active keys.</li>}
          </ul>
        </>
      )}
    </div>
  );
}
