// mergeRefresh: an auto-refresh must not throw away rows loaded with "Load more".
import { describe, expect, it } from 'vitest';
import { mergeRefresh, refreshLimit } from './pages';

const rows = (from: number, n: number, status = 'running') => Array.from({ length: n }, (_, i) => ({ id: `r${from + i}`, status }));

describe('mergeRefresh', () => {
  it('refreshes all shown rows in one request when they fit', () => {
    const shown = rows(0, 120);
    const limit = refreshLimit(shown.length);
    expect(limit).toBe(120);
    const page = { items: rows(0, 120, 'succeeded'), next_cursor: 'c120' };
    const out = mergeRefresh(shown, 'c120', page, limit);
    expect(out.items).toHaveLength(120);
    expect(out.items.every((r) => r.status === 'succeeded')).toBe(true);
    expect(out.cursor).toBe('c120');
  });

  it('keeps rows a concurrent Load more appended beyond the refreshed head', () => {
    const prev = rows(0, 100); // 50 shown when the refresh started, 50 more loaded meanwhile
    const page = { items: [{ id: 'new', status: 'queued' }, ...rows(0, 49)], next_cursor: 'c49' };
    const out = mergeRefresh(prev, 'c100', page, 50);
    expect(out.items.map((r) => r.id)).toEqual(['new', ...rows(0, 49).map((r) => r.id), ...rows(50, 50).map((r) => r.id)]);
    expect(out.cursor).toBe('c100');
  });

  it('a new run pushes the last shown one to the next page (its cursor comes with it)', () => {
    const prev = rows(0, 60);
    const page = { items: [{ id: 'a', status: 'queued' }, ...rows(0, 59)], next_cursor: 'x' };
    const out = mergeRefresh(prev, 'c60', page, 60);
    expect(out.items).toHaveLength(60);
    expect(out.cursor).toBe('x');
  });

  it('never duplicates a row that is both fresh and in the kept tail', () => {
    const prev = rows(0, 100);
    const page = { items: [...rows(0, 40), ...rows(50, 10)], next_cursor: 'y' };
    const out = mergeRefresh(prev, 'c100', page, 50);
    expect(new Set(out.items.map((r) => r.id)).size).toBe(out.items.length);
  });
});
