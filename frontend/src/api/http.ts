// HTTP core of the designer: `apiUrl(path)` prefixes the API base (VITE_API_URL or the seed's
// REACT_APP_API_URL; empty = same origin, as when the API serves the built app) and `request()`
// sends JSON with the session cookie and turns RFC 9457 problem+json answers into `ApiError`
// (status, title, detail, errors[{path, reason, node_id, edge_id}], body). endpoints.ts calls
// request(); api/errors.ts `describeError` turns any failure into text.
export interface FieldError {
  path?: string;
  reason: string;
  node_id?: string | null;
  edge_id?: string | null;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public title: string,
    public detail: string | undefined,
    public errors: FieldError[] = [],
    /** The whole problem+json body (extension members such as `current_version` on a 409). */
    public body: Record<string, unknown> = {},
  ) {
    super(detail ? `${title}: ${detail}` : title);
  }
}

const env = import.meta.env as Record<string, string | undefined>;
export const API_BASE: string = (env.VITE_API_URL ?? env.REACT_APP_API_URL ?? '').replace(/\/$/, '');

export function apiUrl(path: string): string {
  return `${API_BASE}${path}`;
}

/** Called on 401 so the app can show the login page (set by the auth store). */
let onUnauthorized: (() => void) | null = null;
export function setUnauthorizedHandler(fn: (() => void) | null): void {
  onUnauthorized = fn;
}

/** For callers using fetch directly (follow.ts): a 401 signs the user out like any request. */
export function reportUnauthorized(): void {
  onUnauthorized?.();
}

export async function toApiError(res: Response): Promise<ApiError> {
  let body: { title?: string; detail?: string; errors?: FieldError[]; [k: string]: unknown } = {};
  try {
    body = (await res.json()) as typeof body;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(res.status, body.title ?? res.statusText, body.detail, body.errors ?? [], body);
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  raw?: BodyInit;
  signal?: AbortSignal;
}

export async function rawRequest(path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { ...(opts.headers ?? {}) };
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  const res = await fetch(apiUrl(path), {
    method: opts.method ?? 'GET',
    headers,
    body,
    credentials: 'include',
    signal: opts.signal,
  });
  if (!res.ok) {
    if (res.status === 401 && onUnauthorized && !path.startsWith('/api/auth/login')) onUnauthorized();
    throw await toApiError(res);
  }
  return res;
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await rawRequest(path, opts);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  return (text ? JSON.parse(text) : undefined) as T;
}
