// Keyboard shortcuts of the editor (a hook the page mounts; typing in inputs and code editors is
// left alone): Delete/Backspace delete the selection, Ctrl/⌘+C/V copy/paste, Ctrl/⌘+Z undo,
// Ctrl/⌘+Shift+Z or Ctrl+Y redo, Ctrl/⌘+A select all, Ctrl/⌘+S save (the page's callback),
// L auto-layout, F zoom to fit. All edits go through the graph store's actions.
import { useEffect } from 'react';
import { useGraph } from '../stores/graph';

export const SHORTCUTS: [string, string][] = [
  ['Del / ⌫', 'Delete selection'],
  ['Ctrl C / Ctrl V', 'Copy / paste'],
  ['Ctrl Z / Ctrl ⇧ Z', 'Undo / redo'],
  ['Ctrl A', 'Select all'],
  ['Ctrl S', 'Save'],
  ['Shift-drag', 'Box select'],
  ['L', 'Auto-layout'],
  ['F', 'Zoom to fit'],
];

function typingIn(target: EventTarget | null): boolean {
  const el = target as HTMLElement | null;
  if (!el) return false;
  return el.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(el.tagName) || !!el.closest?.('.cm-editor');
}

export function useShortcuts(handlers: { onSave: () => void; onFit: () => void }) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (typingIn(e.target)) return;
      const g = useGraph.getState();
      const mod = e.ctrlKey || e.metaKey;
      const k = e.key.toLowerCase();
      const act = (fn: () => void) => {
        e.preventDefault();
        fn();
      };
      if (mod && k === 's') act(handlers.onSave);
      else if (mod && k === 'z' && e.shiftKey) act(g.redo);
      else if (mod && k === 'z') act(g.undo);
      else if (mod && k === 'y') act(g.redo);
      else if (mod && k === 'c') act(g.copy);
      else if (mod && k === 'v') act(g.paste);
      else if (mod && k === 'a') act(g.selectAll);
      else if (!mod && (e.key === 'Delete' || e.key === 'Backspace')) act(g.deleteSelected);
      else if (!mod && !e.altKey && k === 'l') act(g.layout);
      else if (!mod && !e.altKey && k === 'f') act(handlers.onFit);
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [handlers]);
}
