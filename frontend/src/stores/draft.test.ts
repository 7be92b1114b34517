// Unit tests of the local draft store (stores/draft.ts): save, load, clear per flow.
import { beforeEach, describe, expect, it } from 'vitest';
import { clearDraft, loadDraft, saveDraft } from './draft';

const def = { nodes: [{ id: 'a', type: 'input', position: { x: 1, y: 2 }, data: { params: {} } }], edges: [] };

beforeEach(() => localStorage.clear());

describe('drafts', () => {
  it('keeps one draft per flow with its base version until cleared', () => {
    expect(loadDraft('f1')).toBeNull();
    saveDraft('f1', 3, def);
    saveDraft('f2', 1, { nodes: [], edges: [] });
    const d = loadDraft('f1');
    expect(d?.baseVersion).toBe(3);
    expect(d?.definition).toEqual(def);
    clearDraft('f1');
    expect(loadDraft('f1')).toBeNull();
    expect(loadDraft('f2')?.baseVersion).toBe(1);
  });
  it('ignores a corrupt entry', () => {
    localStorage.setItem('flowstudio.draft.f3', '{not json');
    expect(loadDraft('f3')).toBeNull();
  });
});
