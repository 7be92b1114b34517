// A form generated from a node's params JSON Schema (`fieldsOf` in schema.ts): one widget per
// field — text input, CodeMirror editor for templates/expressions/JSON, number, switch, select —
// with defaults as placeholders, required marks, client validation messages (`validateParams`) and
// a secrets picker that inserts `{{ secrets.NAME }}`. Changes go to `onChange(params, fieldName)`.
// Every widget is tied to its visible label (htmlFor / aria-labelledby), its help and error text
// (aria-describedby) and reports aria-invalid; ids come from useId so two forms never collide.
import { useId, useMemo, useState } from 'react';
import type { JsonSchema } from '../api/types';
import { CodeEditor } from './CodeEditor';
import { fieldsOf, isTemplate, validateParams, type FieldDesc } from './schema';
import { SecretsPicker, useSecretNames } from './SecretsPicker';

interface Props {
  schema: JsonSchema;
  params: Record<string, unknown>;
  onChange: (params: Record<string, unknown>, field: string) => void;
  completions: string[];
  readOnly?: boolean;
}

/** The ids tying one field's widget to its label, help and error. */
interface FieldIds {
  input: string;
  label: string;
  describedBy?: string;
  invalid: boolean;
}

function JsonField({ f, value, set, readOnly, ids }: { f: FieldDesc; value: unknown; set: (v: unknown) => void; readOnly?: boolean; ids: FieldIds }) {
  const initial = value === undefined ? '' : typeof value === 'string' && isTemplate(value) ? value : JSON.stringify(value, null, 2);
  const [text, setText] = useState(initial);
  const [bad, setBad] = useState(false);
  const [shown, setShown] = useState(value);
  if (shown !== value) {
    // the value changed from outside (undo, another node): show it unless the text already means it
    // (or is a half-typed edit that does not parse yet); done while rendering, not in an effect
    setShown(value);
    let keep: boolean;
    try {
      keep = JSON.stringify(JSON.parse(text)) === JSON.stringify(value);
    } catch {
      keep = true;
    }
    if (!keep) setText(initial);
  }
  return (
    <>
      <CodeEditor
        value={text}
        language="json"
        minLines={2}
        readOnly={readOnly}
        labelledBy={ids.label}
        describedBy={bad ? `${ids.input}-json ${ids.describedBy ?? ''}`.trim() : ids.describedBy}
        invalid={ids.invalid || bad}
        placeholder={f.default !== undefined ? `default: ${JSON.stringify(f.default)}` : 'JSON'}
        onChange={(t) => {
          setText(t);
          if (!t.trim()) {
            setBad(false);
            set(undefined);
            return;
          }
          try {
            set(JSON.parse(t));
            setBad(false);
          } catch {
            if (isTemplate(t)) set(t);
            setBad(!isTemplate(t));
          }
        }}
      />
      {bad && (
        <div className="field-error" id={`${ids.input}-json`}>
          Not valid JSON yet
        </div>
      )}
    </>
  );
}

function FieldWidget({ f, value, set, completions, readOnly, ids }: { f: FieldDesc; value: unknown; set: (v: unknown) => void; completions: string[]; readOnly?: boolean; ids: FieldIds }) {
  const ph = f.default !== undefined && f.default !== null ? `default: ${String(f.default)}` : '';
  const a11y = { id: ids.input, 'aria-describedby': ids.describedBy, 'aria-invalid': ids.invalid || undefined, 'aria-required': f.required || undefined };
  switch (f.kind) {
    case 'boolean':
      return (
        <label className="switch">
          <input type="checkbox" {...a11y} disabled={readOnly} checked={Boolean(value ?? f.default)} onChange={(e) => set(e.target.checked)} />
          <span>{(value ?? f.default) ? 'on' : 'off'}</span>
        </label>
      );
    case 'enum':
      return (
        <select {...a11y} disabled={readOnly} value={value === undefined ? '' : String(value)} onChange={(e) => set(e.target.value === '' ? undefined : e.target.value)}>
          <option value="">{f.default !== undefined ? `default (${String(f.default)})` : '—'}</option>
          {(f.options ?? []).map((o) => (
            <option key={String(o)} value={String(o)}>
              {String(o)}
            </option>
          ))}
        </select>
      );
    case 'number':
    case 'integer':
      return (
        <input
          type="text"
          inputMode="decimal"
          {...a11y}
          disabled={readOnly}
          placeholder={ph || (f.nullable ? 'none' : '')}
          value={value === undefined || value === null ? '' : String(value)}
          onChange={(e) => {
            const t = e.target.value.trim();
            if (t === '') set(undefined);
            else if (/^-?\d+(\.\d+)?$/.test(t)) set(Number(t));
            else set(e.target.value);
          }}
        />
      );
    case 'code':
      return (
        <CodeEditor
          value={typeof value === 'string' ? value : ''}
          onChange={(v) => set(v)}
          language={f.language}
          completions={completions}
          readOnly={readOnly}
          labelledBy={ids.label}
          describedBy={ids.describedBy}
          invalid={ids.invalid}
          placeholder={f.language === 'template' ? 'Hello {{ inputs.input_value }}' : ph}
        />
      );
    case 'json':
      return <JsonField f={f} value={value} set={set} readOnly={readOnly} ids={ids} />;
    default:
      return (
        <input
          type="text"
          {...a11y}
          disabled={readOnly}
          name={f.name}
          placeholder={ph}
          value={value === undefined || value === null ? '' : String(value)}
          onChange={(e) => set(e.target.value)}
        />
      );
  }
}

export function SchemaForm({ schema, params, onChange, completions, readOnly }: Props) {
  const fields = useMemo(() => fieldsOf(schema), [schema]);
  const errors = useMemo(() => validateParams(schema, params), [schema, params]);
  const secretNames = useSecretNames();
  const formId = useId();
  const allCompletions = useMemo(
    () => [...completions, ...secretNames.map((n) => `secrets.${n}`)],
    [completions, secretNames],
  );
  if (!fields.length) return <p className="muted small">This node has no parameters.</p>;
  const set = (name: string) => (v: unknown) => {
    const next = { ...params };
    if (v === undefined) delete next[name];
    else next[name] = v;
    onChange(next, name);
  };
  return (
    <div className="schema-form">
      {fields.map((f) => {
        const base = `${formId}-${f.name}`;
        const describedBy = [f.description ? `${base}-help` : '', errors[f.name] ? `${base}-err` : ''].filter(Boolean).join(' ') || undefined;
        const ids: FieldIds = { input: `${base}-input`, label: `${base}-label`, describedBy, invalid: !!errors[f.name] };
        const code = f.kind === 'code' || f.kind === 'json';
        return (
        <div key={f.name} className={`field${errors[f.name] ? ' invalid' : ''}`} data-field={f.name}>
          <div className="field-label">
            {code ? (
              <span id={ids.label}>
                {f.title}
                {f.required && <span className="req" aria-hidden>*</span>}
              </span>
            ) : (
              <label id={ids.label} htmlFor={ids.input}>
                {f.title}
                {f.required && <span className="req" aria-hidden>*</span>}
              </label>
            )}
            {f.secretCapable && !readOnly && (
              <SecretsPicker
                onPick={(ref) => {
                  const cur = params[f.name];
                  set(f.name)(typeof cur === 'string' && cur && f.kind === 'code' ? `${cur}${ref}` : ref);
                }}
              />
            )}
          </div>
          <FieldWidget f={f} value={params[f.name]} set={set(f.name)} completions={allCompletions} readOnly={readOnly} ids={ids} />
          {f.description && (
            <div className="field-help" id={`${base}-help`}>
              {f.description}
            </div>
          )}
          {errors[f.name] && (
            <div className="field-error" id={`${base}-err`}>
              {errors[f.name]}
            </div>
          )}
        </div>
        );
      })}
    </div>
  );
}
