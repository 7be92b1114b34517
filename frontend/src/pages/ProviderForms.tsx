// The forms of the Providers page: `CreateProviderForm` (base URL, API key as one of the admin's
// secrets — the same GET /api/v1/secrets list the node forms use —, label, limits) posts
// /api/v1/providers; `EditProviderForm` patches the label and limits that changed. Both check
// the fields first (lib/providers.ts) and show each problem next to its field, the API's 422
// field errors included (others — 409 duplicate, 403 — above the buttons). Every input has a
// label, errors are tied to it with aria-describedby/aria-invalid, the first invalid field takes
// the focus, Escape cancels.
import { useEffect, useId, useRef, useState, type FormEvent, type KeyboardEvent, type ReactNode } from 'react';
import { providers as providersApi } from '../api/endpoints';
import { describeError } from '../api/errors';
import type { Provider } from '../api/types';
import { fire } from '../lib/fire';
import { useSecretNames } from '../panels/SecretsPicker';
import {
  LIMIT_FIELDS,
  LIMIT_LABELS,
  apiFieldErrors,
  editFormOf,
  emptyCreateForm,
  providerName,
  validateCreate,
  validateEdit,
  type CreateForm,
  type EditForm,
  type FieldErrors,
  type FormField,
} from '../lib/providers';

const CREATE_FIELDS: FormField[] = ['base_url', 'api_key_secret', 'label', ...LIMIT_FIELDS];
const EDIT_FIELDS: FormField[] = ['label', ...LIMIT_FIELDS];

interface FieldProps {
  name: FormField;
  label: string;
  help?: string;
  error?: string;
  required?: boolean;
  children: (ids: { id: string; describedBy: string | undefined; invalid: boolean }) => ReactNode;
}

function Field({ name, label, help, error, required, children }: FieldProps) {
  const base = `${useId()}-${name}`;
  const describedBy = [help ? `${base}-help` : '', error ? `${base}-err` : ''].filter(Boolean).join(' ') || undefined;
  return (
    <div className={`field${error ? ' invalid' : ''}`} data-field={name}>
      <label className="field-label" htmlFor={`${base}-input`}>
        <span>
          {label}
          {required && <span className="req" aria-hidden>*</span>}
        </span>
      </label>
      {children({ id: `${base}-input`, describedBy, invalid: !!error })}
      {help && (
        <div id={`${base}-help`} className="field-help">
          {help}
        </div>
      )}
      {error && (
        <div id={`${base}-err`} className="field-error" data-testid={`error-${name}`}>
          {error}
        </div>
      )}
    </div>
  );
}

function TextInput<F extends Partial<Record<FormField, string>>>(props: {
  name: FormField & keyof F;
  form: F;
  set: (name: FormField & keyof F, value: string) => void;
  ids: { id: string; describedBy: string | undefined; invalid: boolean };
  numeric?: boolean;
  placeholder?: string;
  autoFocus?: boolean;
}) {
  const { name, form, set, ids, numeric } = props;
  return (
    <input
      id={ids.id}
      name={name}
      value={form[name] ?? ''}
      onChange={(e) => set(name, e.target.value)}
      aria-describedby={ids.describedBy}
      aria-invalid={ids.invalid || undefined}
      inputMode={numeric ? 'numeric' : undefined}
      placeholder={props.placeholder}
      autoComplete="off"
      autoFocus={props.autoFocus}
    />
  );
}

/** The three limit inputs, shared by both forms. */
function LimitFields<F extends CreateForm | EditForm>({ form, errors, set }: { form: F; errors: FieldErrors; set: (name: FormField & keyof F, value: string) => void }) {
  return (
    <div className="limit-fields">
      {LIMIT_FIELDS.map((f) => (
        <Field key={f} name={f} label={LIMIT_LABELS[f]} help="Empty = no limit" error={errors[f]}>
          {(ids) => <TextInput name={f} form={form} set={set} ids={ids} numeric placeholder="no limit" />}
        </Field>
      ))}
    </div>
  );
}

/** Form state, errors and a submit that validates, sends and maps the answer's field errors. */
function useProviderForm<F extends CreateForm | EditForm>(initial: F, fields: FormField[], onCancel: () => void) {
  const [form, setForm] = useState<F>(initial);
  const [errors, setErrors] = useState<FieldErrors>({});
  const [alert, setAlert] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const ref = useRef<HTMLFormElement>(null);
  useEffect(() => {
    ref.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
  }, [errors]);
  const set = (name: FormField & keyof F, value: string) => {
    setForm((f) => ({ ...f, [name]: value }));
    setErrors((e) => ({ ...e, [name]: undefined }));
  };
  const submit = async (checked: FieldErrors, send: (() => Promise<void>) | null) => {
    setAlert(null);
    if (!send) {
      setErrors(checked);
      return;
    }
    setBusy(true);
    try {
      await send();
    } catch (err) {
      const byField = apiFieldErrors(err, fields);
      setErrors(byField);
      if (!Object.keys(byField).length) setAlert(describeError(err));
    } finally {
      setBusy(false);
    }
  };
  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === 'Escape') onCancel();
  };
  return { form, errors, alert, busy, ref, set, submit, onKeyDown };
}

function Buttons({ busy, label, alert, onCancel }: { busy: boolean; label: string; alert: string | null; onCancel: () => void }) {
  return (
    <>
      {alert && (
        <div className="alert error" role="alert">
          {alert}
        </div>
      )}
      <div className="row gap">
        <button className="btn primary" type="submit" disabled={busy}>
          {busy ? 'Saving…' : label}
        </button>
        <button className="btn" type="button" onClick={onCancel} disabled={busy}>
          Cancel
        </button>
      </div>
    </>
  );
}

export function CreateProviderForm({ onCreated, onCancel }: { onCreated: (p: Provider) => void; onCancel: () => void }) {
  const secretNames = useSecretNames();
  const { form, errors, alert, busy, ref, set, submit, onKeyDown } = useProviderForm<CreateForm>(emptyCreateForm(), CREATE_FIELDS, onCancel);
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    const { body, errors: checked } = validateCreate(form);
    fire(submit(checked, body && (async () => onCreated(await providersApi.create(body)))));
  };
  return (
    <form ref={ref} className="card pad provider-form" aria-label="Add provider" onSubmit={onSubmit} onKeyDown={onKeyDown} noValidate data-testid="provider-create">
      <h2>Add provider</h2>
      <p className="muted small">A provider is one base URL with one API key; its limits hold across every worker.</p>
      <Field name="base_url" label="Base URL" required error={errors.base_url} help="The OpenAI-compatible endpoint, e.g. https://api.openai.com/v1">
        {(ids) => <TextInput name="base_url" form={form} set={set} ids={ids} placeholder="https://…" autoFocus />}
      </Field>
      <Field
        name="api_key_secret"
        label="API key (secret)"
        error={errors.api_key_secret}
        help={secretNames.length ? 'One of your secrets; its value is never shown.' : 'No secrets yet: add one with POST /api/v1/secrets.'}
      >
        {(ids) => (
          <select
            id={ids.id}
            name="api_key_secret"
            value={form.api_key_secret}
            onChange={(e) => set('api_key_secret', e.target.value)}
            aria-describedby={ids.describedBy}
            aria-invalid={ids.invalid || undefined}
          >
            <option value="">No key</option>
            {secretNames.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        )}
      </Field>
      <Field name="label" label="Label" error={errors.label}>
        {(ids) => <TextInput name="label" form={form} set={set} ids={ids} placeholder="e.g. OpenAI prod" />}
      </Field>
      <LimitFields form={form} errors={errors} set={set} />
      <Buttons busy={busy} label="Add provider" alert={alert} onCancel={onCancel} />
    </form>
  );
}

export function EditProviderForm({ provider, onSaved, onCancel }: { provider: Provider; onSaved: (p: Provider) => void; onCancel: () => void }) {
  const { form, errors, alert, busy, ref, set, submit, onKeyDown } = useProviderForm<EditForm>(editFormOf(provider), EDIT_FIELDS, onCancel);
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    const { patch, errors: checked } = validateEdit(provider, form);
    const send = patch && (Object.keys(patch).length ? async () => onSaved(await providersApi.update(provider.id, patch)) : async () => onCancel());
    fire(submit(checked, send));
  };
  return (
    <form ref={ref} className="provider-form" aria-label={`Edit limits of ${providerName(provider)}`} onSubmit={onSubmit} onKeyDown={onKeyDown} noValidate data-testid="provider-edit">
      <Field name="label" label="Label" error={errors.label}>
        {(ids) => <TextInput name="label" form={form} set={set} ids={ids} autoFocus />}
      </Field>
      <LimitFields form={form} errors={errors} set={set} />
      <Buttons busy={busy} label="Save limits" alert={alert} onCancel={onCancel} />
    </form>
  );
}
