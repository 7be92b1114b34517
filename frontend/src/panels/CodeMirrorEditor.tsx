// A small CodeMirror 6 editor (bundled, works offline) for templates, expressions and JSON params.
// `language` picks the highlighting: 'json' (lang-json), 'python' (code nodes), 'expression'
// (lang-javascript, close to the expression syntax), 'template' (plain text with `{{ ... }}` / `{% ... %}` marked). Completion
// offers `inputs.`, upstream node ids and `secrets.NAME` inside braces. The view is created once
// per mount (loaded lazily through CodeEditor.tsx); outside value changes (undo, secret insertion,
// another node selected) are dispatched into it marked with the `External` annotation, and the
// update listener ignores those: only the user's own edits reach `onChange` (as in
// uiwjs/react-codemirror), so syncing a value never marks the flow dirty. Label, description and
// validity reach the editable element (aria-labelledby / aria-describedby / aria-invalid) through
// a compartment, reconfigured without rebuilding the view.
import { autocompletion, type CompletionContext } from '@codemirror/autocomplete';
import { defaultKeymap, history, historyKeymap } from '@codemirror/commands';
import { json } from '@codemirror/lang-json';
import { javascript } from '@codemirror/lang-javascript';
import { python } from '@codemirror/lang-python';
import { bracketMatching, defaultHighlightStyle, syntaxHighlighting } from '@codemirror/language';
import { Annotation, Compartment, EditorState, type Extension } from '@codemirror/state';
import {
  Decoration,
  EditorView,
  MatchDecorator,
  ViewPlugin,
  keymap,
  placeholder as placeholderExt,
  type DecorationSet,
  type ViewUpdate,
} from '@codemirror/view';
import { useEffect, useRef } from 'react';
import type { CodeLanguage } from './schema';

/** Marks transactions that sync the editor to an outside value: not user edits. */
export const External = Annotation.define<boolean>();

const templateMarks = new MatchDecorator({
  regexp: /\{\{[\s\S]*?\}\}|\{%[\s\S]*?%\}/g,
  decoration: Decoration.mark({ class: 'cm-template-expr' }),
});

const templateHighlight = ViewPlugin.fromClass(
  class {
    decorations: DecorationSet;
    constructor(view: EditorView) {
      this.decorations = templateMarks.createDeco(view);
    }
    update(u: ViewUpdate) {
      this.decorations = templateMarks.updateDeco(u, this.decorations);
    }
  },
  { decorations: (v) => v.decorations },
);

function templateCompletions(words: string[]) {
  return (ctx: CompletionContext) => {
    const before = ctx.state.sliceDoc(Math.max(0, ctx.pos - 200), ctx.pos);
    const open = before.lastIndexOf('{{');
    if (open < 0 || before.lastIndexOf('}}') > open) return null;
    const word = ctx.matchBefore(/[\w.]*/);
    if (!word) return null;
    return { from: word.from, options: words.map((w) => ({ label: w, type: 'variable' })) };
  };
}

function languageExt(language: CodeLanguage | undefined, words: string[]): Extension[] {
  switch (language) {
    case 'json':
      return [json()];
    case 'expression':
      return [javascript()];
    case 'python':
      return [python()];
    default:
      return [templateHighlight, autocompletion({ override: [templateCompletions(words)] })];
  }
}

export interface CodeEditorProps {
  value: string;
  onChange: (v: string) => void;
  language?: CodeLanguage;
  placeholder?: string;
  completions?: string[];
  minLines?: number;
  ariaLabel?: string;
  /** id of the visible label element (wins over ariaLabel). */
  labelledBy?: string;
  describedBy?: string;
  invalid?: boolean;
  readOnly?: boolean;
}

function a11yAttrs(p: Pick<CodeEditorProps, 'ariaLabel' | 'labelledBy' | 'describedBy' | 'invalid' | 'language'>): Extension {
  const attrs: Record<string, string> = { 'data-lang': p.language ?? 'template', 'aria-multiline': 'true', role: 'textbox' };
  if (p.labelledBy) attrs['aria-labelledby'] = p.labelledBy;
  else attrs['aria-label'] = p.ariaLabel ?? 'code';
  if (p.describedBy) attrs['aria-describedby'] = p.describedBy;
  if (p.invalid) attrs['aria-invalid'] = 'true';
  return EditorView.contentAttributes.of(attrs);
}

export default function CodeMirrorEditor({
  value,
  onChange,
  language,
  placeholder,
  completions = [],
  minLines = 3,
  ariaLabel,
  labelledBy,
  describedBy,
  invalid,
  readOnly,
}: CodeEditorProps) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const attrs = useRef(new Compartment());
  const onChangeRef = useRef(onChange);
  useEffect(() => {
    onChangeRef.current = onChange;
  });

  useEffect(() => {
    const v = new EditorView({
      parent: host.current as HTMLDivElement,
      state: EditorState.create({
        doc: value,
        extensions: [
          history(),
          keymap.of([...defaultKeymap, ...historyKeymap]),
          bracketMatching(),
          syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
          EditorView.lineWrapping,
          EditorState.readOnly.of(!!readOnly),
          attrs.current.of(a11yAttrs({ ariaLabel, labelledBy, describedBy, invalid, language })),
          EditorView.theme({ '.cm-content': { minHeight: `${minLines * 1.45}em` } }),
          placeholderExt(placeholder ?? ''),
          ...languageExt(language, completions),
          EditorView.updateListener.of((u) => {
            if (u.docChanged && !u.transactions.some((t) => t.annotation(External))) onChangeRef.current(u.state.doc.toString());
          }),
        ],
      }),
    });
    view.current = v;
    return () => v.destroy();
    // The view is built once; value changes are synced by the effect below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [language, completions.join('|'), readOnly]);

  useEffect(() => {
    const v = view.current;
    if (v && v.state.doc.toString() !== value) {
      v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: value }, annotations: [External.of(true)] });
    }
  }, [value]);

  useEffect(() => {
    view.current?.dispatch({ effects: attrs.current.reconfigure(a11yAttrs({ ariaLabel, labelledBy, describedBy, invalid, language })) });
  }, [ariaLabel, labelledBy, describedBy, invalid, language]);

  return <div className="code-editor" ref={host} />;
}
