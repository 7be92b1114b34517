// The ONE way the designer turns a failure into words: `describeError(err)` reads an ApiError
// (problem+json: detail or title, plus the first field error's path), a network failure
// (fetch's TypeError: the API could not be reached), an abort (null: the user or a newer load
// cancelled it, nothing to show) or anything else. `isAbort(err)` lets callers drop stale
// answers; `isClientError(err)` tells a 4xx (do not retry) from a transient failure.
import { ApiError } from './http';

export function isAbort(err: unknown): boolean {
  return (
    (err instanceof DOMException && err.name === 'AbortError') ||
    (typeof err === 'object' && err !== null && (err as { name?: unknown }).name === 'AbortError')
  );
}

export function isClientError(err: unknown): boolean {
  return err instanceof ApiError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429;
}

/** Text for the user, or null when the failure was a cancellation. */
export function describeError(err: unknown): string | null {
  if (isAbort(err)) return null;
  if (err instanceof ApiError) {
    const main = err.detail ?? err.title ?? `HTTP ${err.status}`;
    const field = err.errors.find((e) => e.path && !main.includes(e.reason));
    return field ? `${main} (${field.path}: ${field.reason})` : main;
  }
  if (err instanceof TypeError) return 'Network error: the server could not be reached. Check your connection and retry.';
  if (err instanceof Error) return err.message;
  if (typeof err === 'string') return err;
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/** describeError for places that always need text (a run's stored error, a final state). */
export function errorText(err: unknown): string {
  return describeError(err) ?? 'Cancelled.';
}
