// Toasts/notices of the whole app (zustand): `notify(text, {kind, action})` queues one; info and
// success notices fade after a few seconds, errors stay until dismissed. `notifyError(err,
// prefix?)` describes any failure through api/errors.ts (aborts are ignored). Rendered by
// components/Notices.tsx inside an aria-live region so screen readers announce them.
import { create } from 'zustand';
import { describeError } from '../api/errors';

export type NoticeKind = 'info' | 'success' | 'error';

export interface Notice {
  id: number;
  kind: NoticeKind;
  text: string;
  action?: { label: string; run: () => void };
}

interface NoticesState {
  items: Notice[];
  notify: (text: string, opts?: { kind?: NoticeKind; action?: Notice['action'] }) => number;
  dismiss: (id: number) => void;
}

let nextId = 1;
const FADE_MS = 5000;

export const useNotices = create<NoticesState>((set, get) => ({
  items: [],
  notify: (text, opts = {}) => {
    const id = nextId++;
    const kind = opts.kind ?? 'info';
    set((s) => ({ items: [...s.items.filter((n) => n.text !== text), { id, kind, text, action: opts.action }].slice(-5) }));
    if (kind !== 'error') setTimeout(() => get().dismiss(id), FADE_MS);
    return id;
  },
  dismiss: (id) => set((s) => ({ items: s.items.filter((n) => n.id !== id) })),
}));

export function notify(text: string, opts?: { kind?: NoticeKind; action?: Notice['action'] }): number {
  return useNotices.getState().notify(text, opts);
}

/** Shows an error notice for `err` (nothing for an abort); returns the text shown or null. */
export function notifyError(err: unknown, prefix?: string, action?: Notice['action']): string | null {
  const text = describeError(err);
  if (text === null) return null;
  const shown = prefix ? `${prefix}: ${text}` : text;
  notify(shown, { kind: 'error', action });
  return shown;
}
