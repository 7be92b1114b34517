// Deploy panel: the flow's API endpoints with copyable curl / Python / JavaScript snippets
// (snippets.ts) and API-key management (POST/GET/DELETE /api/v1/api-keys; a new key is shown once
// and substituted into the snippets). Key actions need the keys:write permission.
import { useEffect, useState } from 'react';
import { apiKeys } from '../api/endpoints';
import { API_BASE } from '../api/http';
import type { ApiKey } from '../api/types';
import { copyText, timeAgo } from '../lib/download';
import { endpointFor, snippet, type SnippetKind, type SnippetLang } from './snippets';

function CopyButton({ text }: { text: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      className="btn sm ghost"
      onClick={() => void copyText(text).then(() => (setDone(true), setTimeout(() => setDone(false), 1500)))}
    >
      {done ? 'Copied ✓' : 'Copy'}
    </button>
  );
}

export function DeployPanel({ flowId, canManageKeys }: { flowId: string; canManageKeys: boolean }) {
  const base = API_BASE || window.location.origin;
  const [kind, setKind] = useState<SnippetKind>('chat');
  const [lang, setLang] = useState<SnippetLang>('curl');
  const [keys, setKeys] = useState<ApiKey[]>([]);
  const [newKey, setNewKey] = useState<string | null>(null);
  const [keyName, setKeyName] = useState('');
  const [error, setError] = useState<string | null>(null);
  const reload = () => apiKeys.list().then(setKeys).catch((e: unknown) => setError(String(e)));
  useEffect(() => {
    if (canManageKeys) void reload();
  }, [canManageKeys]);
  const code = snippet(lang, kind, base, flowId, newKey ?? undefined);

  return (
    <div className="panel-body">
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
                .catch((err: unknown) => setError(String(err)));
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
                  onClick={() => confirm(`Revoke key "${k.name}"?`) && void apiKeys.revoke(k.id).then(reload)}
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
