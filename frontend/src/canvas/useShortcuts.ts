// Keyboard shortcuts of the editor, scoped to the canvas: they act only when focus is on the
// canvas (or on nothing, after clicking the pane), never while typing in an input or code editor
// or with focus in a side panel, and Ctrl/⌘+C leaves a text selection to the browser (copying
// text from a panel copies text, not nodes). Ctrl/⌘+S saves from anywhere in the editor.
// Delete/Backspace delete the selection, Ctrl/⌘+C/V copy/paste, Ctrl/⌘+Z undo, Ctrl/⌘+Shift+Z
// or Ctrl+Y redo, Ctrl/⌘+A select all, L auto-layout, F zoom to fit. Arrow keys on a focused node
// move the selection (React Flow; undoable through the graph store). `shortcutFor` is pure.
import { useEffect } from 'react';
import { useGraph } from '../stores/graph';

export const SHORTCUTS: [string, string][] = [
  ['Del / ⌫', 'Delete selection'],
  ['Ctrl C / Ctrl V', 'Copy / paste nodes'],
  ['Ctrl Z / Ctrl ⇧ Z', 'Undo / redo'],
  ['Ctrl A', 'Select all'],
  ['Ctrl S', 'Save'],
  ['Arrows', 'Move the focused node (undoable)'],
  ['Shift-drag', 'Box select'],
  ['L', 'Auto-layout'],
  ['F', 'Zoom to fit'],
];

export type Shortcut = 'save' | 'undo' | 'redo' | 'copy' | 'paste' | 'selectAll' | 'delete' | 'layout' | 'fit';

function typingIn(el: Element | null): boolean {
  if (!el) return false;
  const h = el as HTMLElement;
  return h.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(h.tagName) || !!h.closest?.('.cm-editor');
}

function inCanvas(el: Element | null): boolean {
  return !el || el === document.body || el === document.documentElement || !!el.closest?.('.canvas-wrap');
}

export interface KeyLike {
  key: string;
  ctrlKey: boolean;
  metaKey: boolean;
  shiftKey: boolean;
  altKey: boolean;
  target: EventTarget | null;
}

/** Which shortcut a key press means here, or null to leave it to the browser. */
export function shortcutFor(e: KeyLike, selectedText = ''): Shortcut | null {
  const target = e.target instanceof Element ? e.target : null;
  const mod = e.ctrlKey || e.metaKey;
  const k = e.key.toLowerCase();
  if (mod && k === 's') return 'save';
  if (typingIn(target) || !inCanvas(target)) return null;
  if (mod && k === 'z') return e.shiftKey ? 'redo' : 'undo';
  if (mod && k === 'y') return 'redo';
  if (mod && k === 'c') return selectedText ? null : 'copy';
  if (mod && k === 'v') return 'paste';
  if (mod && k === 'a') return 'selectAll';
  if (!mod && (e.key === 'Delete' || e.key === 'Backspace')) return 'delete';
  if (!mod && !e.altKey && k === 'l') return 'layout';
  if (!mod && !e.altKey && k === 'f') return 'fit';
  return null;
}

export function useShortcuts(handlers: { onSave: () => void; onFit: () => void }) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const which = shortcutFor(e, window.getSelection?.()?.toString() ?? '');
      if (!which) return;
      e.preventDefault();
      const g = useGraph.getState();
      const actions: Record<Shortcut, () => void> = {
        save: handlers.onSave,
        undo: g.undo,
        redo: g.redo,
        copy: g.copy,
        paste: g.paste,
        selectAll: g.selectAll,
        delete: g.deleteSelected,
        layout: g.layout,
        fit: handlers.onFit,
      };
      actions[which]();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [handlers]);
}
