// The pure logic of the Providers page (pages/ProvidersPage.tsx, pages/ProviderForms.tsx), kept
// apart so it is unit-tested without a DOM:
// - forms hold text; `parseLimit` reads a limit (a whole number ≥ 1, or empty = no limit),
//   `validateCreate` / `validateEdit` check a whole form and build the POST body / the PATCH of the
//   fields that changed (null clears a limit), with one message per field;
// - `apiFieldErrors` puts a 422's problem+json field paths (`body.rpm`) next to the same fields;
// - formatting: counts (12.3k), usage against a limit (or none), the concurrency bar
//   (in flight vs effective vs max) and the 429 summary.
import { ApiError } from '../api/http';
import type { Provider, ProviderCreate, ProviderLimits, ProviderPatch } from '../api/types';
import { timeAgo } from './download';

export const LIMIT_FIELDS = ['max_concurrency', 'rpm', 'tpm'] as const;
export type LimitField = (typeof LIMIT_FIELDS)[number];
export type FormField = LimitField | 'base_url' | 'api_key_secret' | 'label';
export type FieldErrors = Partial<Record<FormField, string>>;

export type LimitsForm = Record<LimitField, string>;
export interface EditForm extends LimitsForm {
  label: string;
}
export interface CreateForm extends EditForm {
  base_url: string;
  api_key_secret: string;
}

export const LIMIT_LABELS: Record<LimitField, string> = {
  max_concurrency: 'Max concurrent calls',
  rpm: 'Requests per minute',
  tpm: 'Tokens per minute',
};

export const LIMIT_ERROR = 'a whole number ≥ 1, or empty for no limit';

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** A limit field's text: empty = no limit (null), else a whole number ≥ 1. */
export function parseLimit(text: string): Parsed<number | null> {
  const t = text.trim();
  if (!t) return { ok: true, value: null };
  if (!/^\d+$/.test(t)) return { ok: false, error: LIMIT_ERROR };
  const n = Number(t);
  if (!Number.isSafeInteger(n) || n < 1) return { ok: false, error: LIMIT_ERROR };
  return { ok: true, value: n };
}

export function emptyCreateForm(): CreateForm {
  return { base_url: '', api_key_secret: '', label: '', max_concurrency: '', rpm: '', tpm: '' };
}

export function editFormOf(p: Provider): EditForm {
  const text = (n: number | null) => (n === null ? '' : String(n));
  return { label: p.label ?? '', max_concurrency: text(p.max_concurrency), rpm: text(p.rpm), tpm: text(p.tpm) };
}

function parseLimits(form: LimitsForm, errors: FieldErrors): ProviderLimits {
  const out: ProviderLimits = { max_concurrency: null, rpm: null, tpm: null };
  for (const f of LIMIT_FIELDS) {
    const r = parseLimit(form[f]);
    if (r.ok) out[f] = r.value;
    else errors[f] = r.error;
  }
  return out;
}

export function checkBaseUrl(text: string): string | null {
  const t = text.trim();
  if (!t) return 'required';
  try {
    const u = new URL(t);
    return u.protocol === 'http:' || u.protocol === 'https:' ? null : 'must start with http:// or https://';
  } catch {
    return 'not a URL (e.g. https://api.openai.com/v1)';
  }
}

/** The POST body of the create form, or the errors that keep it from being sent. */
export function validateCreate(form: CreateForm): { body: ProviderCreate | null; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const urlError = checkBaseUrl(form.base_url);
  if (urlError) errors.base_url = urlError;
  const limits = parseLimits(form, errors);
  if (Object.keys(errors).length) return { body: null, errors };
  const body: ProviderCreate = { base_url: form.base_url.trim(), ...limits };
  if (form.api_key_secret) body.api_key_secret = form.api_key_secret;
  if (form.label.trim()) body.label = form.label.trim();
  return { body, errors };
}

/** The PATCH of the fields that differ from `current` ({} = nothing to save), or the errors. */
export function validateEdit(current: Provider, form: EditForm): { patch: ProviderPatch | null; errors: FieldErrors } {
  const errors: FieldErrors = {};
  const limits = parseLimits(form, errors);
  if (Object.keys(errors).length) return { patch: null, errors };
  const patch: ProviderPatch = {};
  for (const f of LIMIT_FIELDS) if (limits[f] !== current[f]) patch[f] = limits[f];
  const label = form.label.trim() || null;
  if (label !== current.label) patch.label = label;
  return { patch, errors };
}

/** A 422's field errors keyed by the form field its path names (`body.rpm`, `$.rpm`, `rpm`). */
export function apiFieldErrors(err: unknown, fields: readonly FormField[]): FieldErrors {
  const out: FieldErrors = {};
  if (!(err instanceof ApiError)) return out;
  for (const e of err.errors) {
    const name = (e.path ?? '').replace(/^(body|\$)\.?/, '').split(/[.[]/)[0] as FormField;
    if (fields.includes(name) && !out[name]) out[name] = e.reason;
  }
  return out;
}

/** 950 -> "950", 12_345 -> "12k", 2_500_000 -> "2.5M" (999_999 -> "1M", never "1000k"). */
export function fmtCount(n: number): string {
  if (Math.abs(n) < 999.5) return String(Math.round(n));
  const units: [number, string][] = [[1e3, 'k'], [1e6, 'M'], [1e9, 'G']];
  let text = '';
  for (const [div, unit] of units) {
    const v = n / div;
    text = `${Math.abs(v) < 9.95 ? v.toFixed(1).replace(/\.0$/, '') : Math.round(v)}${unit}`;
    if (Math.abs(Math.round(v)) < 1000) break;
  }
  return text;
}

/** Share of a limit used, 0..1 (capped), or null without a limit. */
export function usageRatio(used: number, limit: number | null): number | null {
  if (limit === null || limit <= 0) return null;
  return Math.min(1, Math.max(0, used / limit));
}

export type UsageLevel = 'ok' | 'high' | 'full';
export function usageLevel(ratio: number | null): UsageLevel {
  if (ratio === null || ratio < 0.8) return 'ok';
  return ratio < 1 ? 'high' : 'full';
}

/** "812 / 1k per min" or "812 per min" without a limit. */
export function usageText(used: number, limit: number | null): string {
  return limit === null ? `${fmtCount(used)} / min` : `${fmtCount(used)} of ${fmtCount(limit)} / min`;
}

export interface ConcurrencyBar {
  /** Width of the in-flight fill and position of the effective-limit marker, in % of the scale. */
  inFlightPct: number;
  effectivePct: number;
  /** The bar's full width: the configured max, else the larger of effective and in flight. */
  scale: number;
  level: UsageLevel;
}

const pct = (v: number, scale: number) => Math.min(100, Math.max(0, (v / scale) * 100));

export function concurrencyBar(p: Pick<Provider, 'in_flight' | 'effective_concurrency' | 'max_concurrency'>): ConcurrencyBar {
  const scale = Math.max(1, p.max_concurrency ?? Math.max(p.effective_concurrency, p.in_flight));
  return {
    inFlightPct: pct(p.in_flight, scale),
    effectivePct: pct(p.effective_concurrency, scale),
    scale,
    level: usageLevel(usageRatio(p.in_flight, Math.max(1, p.effective_concurrency))),
  };
}

/** "3 in flight · effective 8 · max 16" ("· no max" without a configured limit). */
export function concurrencyText(
  p: Pick<Provider, 'in_flight' | 'effective_concurrency' | 'max_concurrency'> & Partial<Pick<Provider, 'learned_limit'>>,
): string {
  const max = p.max_concurrency === null ? 'no max' : `max ${fmtCount(p.max_concurrency)}`;
  const learned = p.learned_limit == null ? '' : ` · 429s at ${fmtCount(p.learned_limit)}`;
  return `${p.in_flight} in flight · effective ${p.effective_concurrency}${learned} · ${max}`;
}

export function throttledText(p: Pick<Provider, 'throttled_total' | 'last_throttled_at'>): string {
  if (p.throttled_total === 0) return 'none';
  return p.last_throttled_at ? `last ${timeAgo(p.last_throttled_at)}` : '';
}

/** The label, else the host of the base URL (for headings and confirmations). */
export function providerName(p: Pick<Provider, 'label' | 'base_url'>): string {
  if (p.label) return p.label;
  try {
    return new URL(p.base_url).host || p.base_url;
  } catch {
    return p.base_url;
  }
}
