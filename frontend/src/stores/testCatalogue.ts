// Shared test fixture: a small node catalogue with typed ports (used by the store tests).
import type { NodeSpec } from '../api/types';
import type { Catalogue } from './graphLogic';

export const spec = (type: string, ins: [string, string][], outs: [string, string][]): NodeSpec => ({
  type,
  title: type,
  category: 'test',
  description: '',
  params_schema: {},
  inputs: ins.map(([name, t]) => ({ name, type: t })),
  outputs: outs.map(([name, t]) => ({ name, type: t })),
  cpu_bound: false,
  dynamic_outputs: false,
  available: true,
  unavailable_reason: null,
});

export const catalogue: Catalogue = {
  input: spec('input', [], [['out', 'any']]),
  output: spec('output', [['in', 'any']], []),
  text_src: spec('text_src', [], [['out', 'text']]),
  num_sink: spec('num_sink', [['in', 'number']], []),
  text_sink: spec('text_sink', [['in', 'text']], []),
  condition: spec('condition', [['in', 'any']], [['true', 'any'], ['false', 'any']]),
};
