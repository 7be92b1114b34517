// Unit tests of the pure graph logic: definition round trip, typed-port rules, ids, copy/paste,
// layout and 422 error mapping (graphLogic.ts).
import { describe, expect, it } from 'vitest';
import type { FlowDefinition } from '../api/types';
import {
  autoLayout,
  checkConnection,
  copySelection,
  errorsByNode,
  fromDefinition,
  newNodeId,
  outputsFor,
  pasteClipboard,
  toDefinition,
} from './graphLogic';
import { catalogue, spec } from './testCatalogue';

const def: FlowDefinition = {
  nodes: [
    { id: 'in', type: 'input', position: { x: 0, y: 0 }, data: { params: {} } },
    { id: 'c', type: 'condition', position: { x: 200, y: 0 }, data: { params: { expression: 'x' }, retry: { max_attempts: 3 } } },
    { id: 'out', type: 'output', position: { x: 400, y: 0 }, data: { params: {} } },
  ],
  edges: [
    { id: 'e1', source: 'in', sourceHandle: 'out', target: 'c', targetHandle: 'in' },
    { id: 'e2', source: 'c', sourceHandle: 'true', target: 'out', targetHandle: 'in' },
  ],
};

describe('definition round trip', () => {
  it('keeps the contract shape and drops React Flow UI fields', () => {
    const { nodes, edges } = fromDefinition(def);
    nodes[0] = { ...nodes[0], selected: true, measured: { width: 10, height: 10 }, dragging: false };
    expect(toDefinition(nodes, edges)).toEqual(def);
    expect(Object.keys(toDefinition(nodes, edges).nodes[0]).sort()).toEqual(['data', 'id', 'position', 'type']);
  });
  it('defaults missing handles to the in/out ports', () => {
    const { edges } = fromDefinition({
      nodes: def.nodes,
      edges: [{ id: 'x', source: 'in', target: 'c', sourceHandle: null, targetHandle: null }],
    });
    expect(edges[0].sourceHandle).toBe('out');
    expect(edges[0].targetHandle).toBe('in');
  });
});

describe('checkConnection', () => {
  const g = fromDefinition({
    nodes: [
      ...def.nodes,
      { id: 'ts', type: 'text_src', position: { x: 0, y: 0 }, data: { params: {} } },
      { id: 'ns', type: 'num_sink', position: { x: 0, y: 0 }, data: { params: {} } },
      { id: 'tk', type: 'text_sink', position: { x: 0, y: 0 }, data: { params: {} } },
    ],
    edges: def.edges,
  });
  const check = (source: string, sh: string, target: string, th: string) =>
    checkConnection({ source, sourceHandle: sh, target, targetHandle: th }, g.nodes, g.edges, catalogue);

  it('accepts matching and any-typed ports', () => {
    expect(check('ts', 'out', 'tk', 'in').ok).toBe(true);
    expect(check('ts', 'out', 'out', 'in').ok).toBe(true);
    expect(check('c', 'false', 'out', 'in').ok).toBe(true);
  });
  it('refuses incompatible types with a hint naming both ports', () => {
    const r = check('ts', 'out', 'ns', 'in');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/text.*number/);
  });
  it('refuses self loops, duplicates, cycles and unknown ports', () => {
    expect(check('c', 'true', 'c', 'in').ok).toBe(false);
    expect(check('in', 'out', 'c', 'in').ok).toBe(false);
    const cyc = checkConnection(
      { source: 'c', sourceHandle: 'true', target: 'in', targetHandle: 'in' },
      g.nodes,
      g.edges,
      { ...catalogue, input: spec('input', [['in', 'any']], [['out', 'any']]) },
    );
    expect(cyc.ok).toBe(false);
    if (!cyc.ok) expect(cyc.reason).toMatch(/cycle/);
    expect(check('c', 'nope', 'out', 'in').ok).toBe(false);
  });
});

describe('ids, copy and paste', () => {
  it('generates template-safe unique ids, never reserved ones', () => {
    expect(newNodeId('http_request', ['http_request_1'])).toBe('http_request_2');
    expect(newNodeId('input', [])).toBe('input_1');
    expect(newNodeId('9x-y', [])).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
  });
  it('pastes a selection with fresh ids and internal edges remapped', () => {
    const g = fromDefinition(def);
    g.nodes = g.nodes.map((n) => ({ ...n, selected: n.id !== 'out' }));
    const clip = copySelection(g.nodes, g.edges)!;
    expect(clip.nodes.map((n) => n.id)).toEqual(['in', 'c']);
    expect(clip.edges.map((e) => e.id)).toEqual(['e1']);
    const pasted = pasteClipboard(clip, g.nodes, g.edges);
    expect(pasted.nodes.map((n) => n.id)).toEqual(['input_1', 'condition_1']);
    expect(pasted.edges[0]).toMatchObject({ source: 'input_1', target: 'condition_1', id: 'e3' });
    expect(pasted.nodes[1].position).toEqual({ x: 240, y: 40 });
    expect(pasted.nodes[1].data.retry).toEqual({ max_attempts: 3 });
  });
  it('copies nothing when nothing is selected', () => {
    const g = fromDefinition(def);
    expect(copySelection(g.nodes, g.edges)).toBeNull();
  });
});

describe('autoLayout', () => {
  it('orders a chain left to right without overlaps', () => {
    const g = fromDefinition({ ...def, nodes: def.nodes.map((n) => ({ ...n, position: { x: 0, y: 0 } })) });
    const laid = autoLayout(g.nodes, g.edges);
    const xs = laid.map((n) => n.position.x);
    expect(xs[0]).toBeLessThan(xs[1]);
    expect(xs[1]).toBeLessThan(xs[2]);
  });
});

describe('errorsByNode', () => {
  it('maps problem errors to nodes by node_id, edge_id or edge path', () => {
    const g = fromDefinition(def);
    const r = errorsByNode(
      [
        { path: 'definition.nodes[1].data.params', reason: 'bad', node_id: 'c' },
        { reason: 'dangling', edge_id: 'e2' },
        { path: 'definition.edges[0].target', reason: 'no port' },
        { path: 'definition', reason: 'general' },
      ],
      g.edges,
    );
    expect(r.nodes).toEqual({ c: ['bad', 'no port'], out: ['dangling'] });
    expect(r.general).toEqual(['general']);
  });
});

describe('outputsFor', () => {
  it('gives a router one port per route plus its default, like the server', () => {
    const router = spec('router', [['in', 'any']], [['default', 'any']]);
    expect(outputsFor(router, {}).map((p) => p.name)).toEqual(['default']);
    const params = { routes: [{ name: 'yes', expression: 'x' }, { name: 'no', expression: 'y' }], default: 'other' };
    expect(outputsFor(router, params).map((p) => p.name)).toEqual(['yes', 'no', 'other']);
  });
});
