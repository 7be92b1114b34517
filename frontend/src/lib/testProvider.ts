// Test fixture (imported by tests only): a provider row as GET /api/v1/providers answers it, with
// no limits and nothing in use unless overridden.
import type { Provider } from '../api/types';

export function provider(over: Partial<Provider> = {}): Provider {
  return {
    id: 'p1',
    base_url: 'https://api.example.com/v1',
    key_fingerprint: 'sk-…a1b2',
    label: null,
    max_concurrency: null,
    rpm: null,
    tpm: null,
    effective_concurrency: 8,
    learned_limit: null,
    in_flight: 0,
    parked: 0,
    requests_last_minute: 0,
    tokens_last_minute: 0,
    throttled_total: 0,
    last_throttled_at: null,
    created_at: '2026-01-01T00:00:00Z',
    updated_at: '2026-01-01T00:00:00Z',
    ...over,
  };
}
