// Lists the user's secret names (GET /api/v1/secrets; values are never readable) and calls
// `onPick('{{ secrets.NAME }}')` so the config form inserts the reference into a field.
import { useEffect, useState } from 'react';
import { secrets as secretsApi } from '../api/endpoints';
import type { Secret } from '../api/types';
import { secretRef } from './schema';

let cache: Secret[] | null = null;

export function useSecretNames(): string[] {
  const [items, setItems] = useState<Secret[]>(cache ?? []);
  useEffect(() => {
    secretsApi
      .list()
      .then((s) => {
        cache = s;
        setItems(s);
      })
      .catch(() => setItems([]));
  }, []);
  return items.map((s) => s.name);
}

export function SecretsPicker({ onPick }: { onPick: (ref: string) => void }) {
  const names = useSecretNames();
  return (
    <select
      className="secrets-picker"
      value=""
      aria-label="Insert secret"
      title={names.length ? 'Insert a secret reference' : 'No secrets yet (add them with POST /api/v1/secrets)'}
      onChange={(e) => e.target.value && onPick(secretRef(e.target.value))}
    >
      <option value="">+ secret…</option>
      {names.map((n) => (
        <option key={n} value={n}>
          {n}
        </option>
      ))}
    </select>
  );
}
