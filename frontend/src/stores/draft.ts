// Unsaved canvas edits kept as a draft in localStorage (the API has no draft endpoint): the editor
// page calls `saveDraft` (debounced) while the flow is dirty, `loadDraft` when it opens the flow
// (offering to restore a draft newer than the saved version) and `clearDraft` after a save.
import type { FlowDefinition } from '../api/types';

export interface Draft {
  flowId: string;
  baseVersion: number;
  savedAt: string;
  definition: FlowDefinition;
}

const key = (flowId: string) => `flowstudio.draft.${flowId}`;

export function saveDraft(flowId: string, baseVersion: number, definition: FlowDefinition): void {
  const draft: Draft = { flowId, baseVersion, savedAt: new Date().toISOString(), definition };
  try {
    localStorage.setItem(key(flowId), JSON.stringify(draft));
  } catch {
    /* storage full or disabled: drafts are best-effort */
  }
}

export function loadDraft(flowId: string): Draft | null {
  try {
    const raw = localStorage.getItem(key(flowId));
    return raw ? (JSON.parse(raw) as Draft) : null;
  } catch {
    return null;
  }
}

export function clearDraft(flowId: string): void {
  try {
    localStorage.removeItem(key(flowId));
  } catch {
    /* ignore */
  }
}
