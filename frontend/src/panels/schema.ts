// Pure JSON-Schema helpers for the node config form (SchemaForm.tsx renders `fieldsOf(schema)`,
// NodeConfigPanel/graph addNode use `defaultParams`, both show `validateParams` messages).
// msgspec schemas are `{"$ref": "#/$defs/X", "$defs": {...}}`: `resolve` follows $ref (also
// inside anyOf), `fieldsOf` picks a widget per property (text, code editor, number, switch, enum,
// JSON), and templated values (`{{ ... }}`) are accepted for any type, as the server does.
import type { JsonSchema } from '../api/types';

export type FieldKind = 'string' | 'code' | 'number' | 'integer' | 'boolean' | 'enum' | 'json';
export type CodeLanguage = 'template' | 'expression' | 'json' | 'python';

export interface FieldDesc {
  name: string;
  title: string;
  kind: FieldKind;
  language?: CodeLanguage;
  required: boolean;
  nullable: boolean;
  default?: unknown;
  options?: unknown[];
  description?: string;
  secretCapable: boolean;
}

const TEMPLATE_FIELDS = new Set(['template', 'prompt', 'system', 'text', 'message']);
const EXPRESSION_FIELDS = new Set(['expression', 'condition']);
const PYTHON_FIELDS = new Set(['code', 'script']);
const SECRET_FIELDS = /key|token|secret|password|auth/i;

export function resolve(schema: JsonSchema, root: JsonSchema = schema): JsonSchema {
  let s = schema;
  for (let i = 0; i < 10 && s.$ref; i++) {
    const name = s.$ref.replace(/^#\/\$defs\//, '');
    s = root.$defs?.[name] ?? {};
  }
  return s;
}

export function isTemplate(v: unknown): boolean {
  return typeof v === 'string' && /\{\{[\s\S]*\}\}|\{%[\s\S]*%\}/.test(v);
}

function baseTypes(s: JsonSchema, root: JsonSchema): { types: string[]; enumValues?: unknown[] } {
  const r = resolve(s, root);
  if (r.enum) return { types: ['enum'], enumValues: r.enum };
  if (r.anyOf) {
    const parts = r.anyOf.map((x) => baseTypes(x, root));
    return {
      types: parts.flatMap((p) => p.types),
      enumValues: parts.find((p) => p.enumValues)?.enumValues,
    };
  }
  if (Array.isArray(r.type)) return { types: r.type };
  if (r.type) return { types: [r.type] };
  return { types: ['any'] };
}

export function fieldsOf(schema: JsonSchema): FieldDesc[] {
  const obj = resolve(schema);
  const required = new Set(obj.required ?? []);
  return Object.entries(obj.properties ?? {}).map(([name, raw]) => {
    const prop = resolve(raw, schema);
    const { types, enumValues } = baseTypes(raw, schema);
    const nullable = types.includes('null');
    const t = types.filter((x) => x !== 'null');
    let kind: FieldKind;
    let language: CodeLanguage | undefined;
    if (enumValues) kind = 'enum';
    else if (t.length === 1 && t[0] === 'string') {
      if (TEMPLATE_FIELDS.has(name)) [kind, language] = ['code', 'template'];
      else if (EXPRESSION_FIELDS.has(name)) [kind, language] = ['code', 'expression'];
      else if (PYTHON_FIELDS.has(name)) [kind, language] = ['code', 'python'];
      else kind = 'string';
    } else if (t.length === 1 && (t[0] === 'number' || t[0] === 'integer' || t[0] === 'boolean')) {
      kind = t[0] as FieldKind;
    } else {
      [kind, language] = ['json', 'json'];
    }
    return {
      name,
      title: prop.title ?? name.replace(/_/g, ' '),
      kind,
      language,
      required: required.has(name),
      nullable,
      default: prop.default,
      options: enumValues,
      description: prop.description,
      secretCapable: (kind !== 'json' && SECRET_FIELDS.test(name)) || language === 'template',
    };
  });
}

/** Params for a freshly dropped node: required strings start empty, others omitted (defaults). */
export function defaultParams(schema: JsonSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fieldsOf(schema)) {
    if (f.required && f.default === undefined) {
      out[f.name] = f.kind === 'string' || f.kind === 'code' ? '' : f.kind === 'boolean' ? false : '';
    }
  }
  return out;
}

/** Client-side messages (the server re-validates on save): field name -> message. */
export function validateParams(
  schema: JsonSchema,
  params: Record<string, unknown>,
): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const f of fieldsOf(schema)) {
    const v = params[f.name];
    if (v === undefined || v === '') {
      if (f.required) errors[f.name] = 'Required';
      continue;
    }
    if (isTemplate(v)) continue;
    if (v === null) {
      if (!f.nullable && f.kind !== 'json') errors[f.name] = 'Must not be empty';
      continue;
    }
    if ((f.kind === 'number' || f.kind === 'integer') && typeof v !== 'number') {
      errors[f.name] = `Must be a ${f.kind}`;
    } else if (f.kind === 'integer' && !Number.isInteger(v)) {
      errors[f.name] = 'Must be a whole number';
    } else if (f.kind === 'boolean' && typeof v !== 'boolean') {
      errors[f.name] = 'Must be true or false';
    } else if (f.kind === 'enum' && !(f.options ?? []).includes(v)) {
      errors[f.name] = `One of: ${(f.options ?? []).join(', ')}`;
    } else if ((f.kind === 'string' || f.kind === 'code') && typeof v !== 'string') {
      errors[f.name] = 'Must be text';
    }
  }
  return errors;
}

export function secretRef(name: string): string {
  return `{{ secrets.${name} }}`;
}
