// Lazy front for the CodeMirror editor (CodeMirrorEditor.tsx): CodeMirror is loaded on first use
// so the canvas's first paint does not wait for it; until then a plain read-only preview shows.
import { lazy, Suspense } from 'react';
import type { CodeEditorProps } from './CodeMirrorEditor';

const CodeMirrorEditor = lazy(() => import('./CodeMirrorEditor'));

export function CodeEditor(props: CodeEditorProps) {
  return (
    <Suspense fallback={<pre className="code-editor code-fallback">{props.value || props.placeholder}</pre>}>
      <CodeMirrorEditor {...props} />
    </Suspense>
  );
}
