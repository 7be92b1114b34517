// describeError is the one way failures become text: problem+json detail (+ the first field
// error), network failures, aborts (null: nothing to show) and anything else.
import { describe, expect, it } from 'vitest';
import { describeError, isClientError } from './errors';
import { ApiError } from './http';

describe('describeError', () => {
  it('reads problem+json detail and the first field path', () => {
    const e = new ApiError(422, 'Unprocessable Content', 'name must be 1-200 characters', [{ path: 'body.name', reason: 'too long' }]);
    expect(describeError(e)).toBe('name must be 1-200 characters (body.name: too long)');
    expect(describeError(new ApiError(500, 'Internal Server Error', undefined))).toBe('Internal Server Error');
  });

  it('names network failures, ignores aborts, and never throws on odd values', () => {
    expect(describeError(new TypeError('Failed to fetch'))).toMatch(/^Network error/);
    expect(describeError(new DOMException('aborted', 'AbortError'))).toBeNull();
    expect(describeError({ message: 'boom' })).toBe('boom');
    expect(describeError({ code: 1 })).toBe('{"code":1}');
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(describeError(cyclic)).toBe('[object Object]');
  });

  it('treats 4xx but not 408/429/5xx as client errors (no retry)', () => {
    expect([401, 403, 404, 409].map((s) => isClientError(new ApiError(s, 't', undefined)))).toEqual([true, true, true, true]);
    expect([408, 429, 500, 503].map((s) => isClientError(new ApiError(s, 't', undefined)))).toEqual([false, false, false, false]);
    expect(isClientError(new TypeError('x'))).toBe(false);
  });
});
