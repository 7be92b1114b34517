// Component tests of the generated node form (SchemaForm): every widget is reachable by its
// visible label (htmlFor / aria-labelledby), its help text is its description, and a field with
// a validation error is aria-invalid and described by the error (WCAG 1.3.1 / 3.3.1).
import { cleanup, fireEvent, render, screen } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { JsonSchema } from '../api/types';
import { SchemaForm } from './SchemaForm';

const schema: JsonSchema = {
  type: 'object',
  required: ['model'],
  properties: {
    model: { type: 'string', title: 'Model', description: 'Which model answers' },
    temperature: { type: 'number', title: 'Temperature', minimum: 0, maximum: 2 },
    mode: { type: 'string', title: 'Mode', enum: ['fast', 'slow'] },
    stream: { type: 'boolean', title: 'Stream' },
  },
};

beforeEach(() => vi.stubGlobal('fetch', vi.fn(() => Promise.resolve(new Response('[]', { status: 200 })))));
afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

describe('SchemaForm', () => {
  it('ties each field to its label and help text', () => {
    render(<SchemaForm schema={schema} params={{ model: 'm' }} onChange={() => undefined} completions={[]} />);
    const model = screen.getByLabelText(/^Model/);
    expect(model.tagName).toBe('INPUT');
    expect(model).toHaveProperty('value', 'm');
    const help = document.getElementById(model.getAttribute('aria-describedby') ?? '');
    expect(help?.textContent).toBe('Which model answers');
    expect(model.getAttribute('aria-required')).toBe('true');
    expect(screen.getByLabelText(/^Temperature/).tagName).toBe('INPUT');
    expect(screen.getByLabelText(/^Mode$/).tagName).toBe('SELECT');
    expect(screen.getByLabelText(/^Stream/).getAttribute('type')).toBe('checkbox');
  });

  it('marks an invalid field aria-invalid and describes it with the error', () => {
    render(<SchemaForm schema={schema} params={{ model: 'm', temperature: 'warm' }} onChange={() => undefined} completions={[]} />);
    const t = screen.getByLabelText(/^Temperature/);
    expect(t.getAttribute('aria-invalid')).toBe('true');
    const ids = (t.getAttribute('aria-describedby') ?? '').split(' ');
    const texts = ids.map((id) => document.getElementById(id)?.textContent ?? '');
    expect(texts.join(' ')).toMatch(/Must be a number/);
    expect(screen.getByLabelText(/^Model/).getAttribute('aria-invalid')).toBeNull();
  });

  it('two forms on one page never share field ids', () => {
    render(
      <>
        <SchemaForm schema={schema} params={{}} onChange={() => undefined} completions={[]} />
        <SchemaForm schema={schema} params={{}} onChange={() => undefined} completions={[]} />
      </>,
    );
    const [a, b] = screen.getAllByLabelText(/^Model/);
    expect(a.id).not.toBe(b.id);
  });

  it('reports edits with the field name', () => {
    const onChange = vi.fn();
    render(<SchemaForm schema={schema} params={{}} onChange={onChange} completions={[]} />);
    fireEvent.change(screen.getByLabelText(/^Temperature/), { target: { value: '0.5' } });
    expect(onChange).toHaveBeenCalledWith({ temperature: 0.5 }, 'temperature');
  });
});
