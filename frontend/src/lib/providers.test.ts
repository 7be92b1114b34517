// The Providers page's pure logic: limit parsing (whole numbers ≥ 1, empty = no limit), the create
// body and the PATCH of changed fields only, 422 field paths mapped to form fields, and formatting.
import { describe, expect, it } from 'vitest';
import { ApiError } from '../api/http';
import {
  LIMIT_ERROR,
  apiFieldErrors,
  concurrencyBar,
  concurrencyText,
  editFormOf,
  emptyCreateForm,
  fmtCount,
  parseLimit,
  providerName,
  throttledText,
  usageLevel,
  usageRatio,
  usageText,
  validateCreate,
  validateEdit,
} from './providers';
import { provider } from './testProvider';

describe('parseLimit', () => {
  it('reads empty as no limit and whole numbers ≥ 1', () => {
    expect(parseLimit('')).toEqual({ ok: true, value: null });
    expect(parseLimit('  ')).toEqual({ ok: true, value: null });
    expect(parseLimit(' 64 ')).toEqual({ ok: true, value: 64 });
    expect(parseLimit('1')).toEqual({ ok: true, value: 1 });
  });
  it.each(['0', '-1', '1.5', '1e3', 'abc', '99999999999999999999'])('refuses %s', (text) => {
    expect(parseLimit(text)).toEqual({ ok: false, error: LIMIT_ERROR });
  });
});

describe('validateCreate', () => {
  it('needs an http(s) base URL and valid limits, one message per field', () => {
    const { body, errors } = validateCreate({ ...emptyCreateForm(), base_url: 'ftp://x', rpm: '0', tpm: 'lots' });
    expect(body).toBeNull();
    expect(errors).toEqual({ base_url: 'must start with http:// or https://', rpm: LIMIT_ERROR, tpm: LIMIT_ERROR });
    expect(validateCreate(emptyCreateForm()).errors.base_url).toBe('required');
    expect(validateCreate({ ...emptyCreateForm(), base_url: 'not a url' }).errors.base_url).toMatch(/not a URL/);
  });
  it('builds the body: trimmed, empty optional fields left out, empty limits null', () => {
    const { body, errors } = validateCreate({ base_url: ' http://127.0.0.1:9000/v1 ', api_key_secret: '', label: '  ', max_concurrency: '64', rpm: '', tpm: '' });
    expect(errors).toEqual({});
    expect(body).toEqual({ base_url: 'http://127.0.0.1:9000/v1', max_concurrency: 64, rpm: null, tpm: null });
    const full = validateCreate({ base_url: 'https://a/v1', api_key_secret: 'OPENAI_KEY', label: 'prod', max_concurrency: '', rpm: '600', tpm: '90000' });
    expect(full.body).toEqual({ base_url: 'https://a/v1', api_key_secret: 'OPENAI_KEY', label: 'prod', max_concurrency: null, rpm: 600, tpm: 90000 });
  });
});

describe('validateEdit', () => {
  const current = provider({ label: 'prod', max_concurrency: 16, rpm: 600 });
  it('starts from the provider and sends only what changed (null clears a limit)', () => {
    const form = editFormOf(current);
    expect(form).toEqual({ label: 'prod', max_concurrency: '16', rpm: '600', tpm: '' });
    expect(validateEdit(current, form)).toEqual({ patch: {}, errors: {} });
    expect(validateEdit(current, { ...form, max_concurrency: '', tpm: '1000' }).patch).toEqual({ max_concurrency: null, tpm: 1000 });
    expect(validateEdit(current, { ...form, label: ' ' }).patch).toEqual({ label: null });
  });
  it('sends nothing while a field is wrong', () => {
    expect(validateEdit(current, { ...editFormOf(current), rpm: '0.5' })).toEqual({ patch: null, errors: { rpm: LIMIT_ERROR } });
  });
});

describe('apiFieldErrors', () => {
  it('maps body.x / $.x / x paths of a 422 to the form fields it knows', () => {
    const err = new ApiError(422, 'Unprocessable Content', 'bad', [
      { path: 'body.rpm', reason: 'Expected `int` >= 1' },
      { path: '$.tpm', reason: 'too big' },
      { path: 'api_key_secret', reason: 'no such secret' },
      { path: 'body.rpm', reason: 'second message for rpm' },
      { path: 'body.unknown', reason: 'ignored' },
      { reason: 'no path' },
    ]);
    expect(apiFieldErrors(err, ['rpm', 'tpm', 'api_key_secret'])).toEqual({ rpm: 'Expected `int` >= 1', tpm: 'too big', api_key_secret: 'no such secret' });
    expect(apiFieldErrors(err, ['label'])).toEqual({});
    expect(apiFieldErrors(new Error('x'), ['rpm'])).toEqual({});
  });
});

describe('formatting', () => {
  it('shortens counts', () => {
    expect([950, 999.6, 1500, 9_960, 12_345, 999_999, 2_500_000, 3e9].map(fmtCount)).toEqual(['950', '1k', '1.5k', '10k', '12k', '1M', '2.5M', '3G']);
  });
  it('puts usage against its limit, capped, with a level', () => {
    expect(usageRatio(300, 600)).toBe(0.5);
    expect(usageRatio(900, 600)).toBe(1);
    expect(usageRatio(5, null)).toBeNull();
    expect([null, 0.5, 0.85, 1].map(usageLevel)).toEqual(['ok', 'ok', 'high', 'full']);
    expect(usageText(812, 1000)).toBe('812 of 1k / min');
    expect(usageText(812, null)).toBe('812 / min');
  });
  it('scales the concurrency bar to the max, else to what is in use', () => {
    expect(concurrencyBar({ in_flight: 4, effective_concurrency: 8, max_concurrency: 16 })).toEqual({ inFlightPct: 25, effectivePct: 50, scale: 16, level: 'ok' });
    expect(concurrencyBar({ in_flight: 8, effective_concurrency: 8, max_concurrency: null })).toEqual({ inFlightPct: 100, effectivePct: 100, scale: 8, level: 'full' });
    expect(concurrencyBar({ in_flight: 0, effective_concurrency: 0, max_concurrency: null }).scale).toBe(1);
    expect(concurrencyText({ in_flight: 3, effective_concurrency: 8, max_concurrency: null })).toBe('3 in flight · effective 8 · no max');
    expect(concurrencyText({ in_flight: 60, effective_concurrency: 63, learned_limit: 64, max_concurrency: null })).toBe(
      '60 in flight · effective 63 · 429s at 64 · no max',
    );
  });
  it('names a provider and sums up its 429s', () => {
    expect(providerName(provider())).toBe('api.example.com');
    expect(providerName(provider({ label: 'prod' }))).toBe('prod');
    expect(throttledText(provider())).toBe('none');
    expect(throttledText(provider({ throttled_total: 3, last_throttled_at: new Date().toISOString() }))).toBe('last just now');
  });
});
