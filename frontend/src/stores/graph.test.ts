// Unit tests of the graph store: editing records undo history, connect refuses bad ports with a
// hint, copy/paste, delete, read-only mode and the dirty flag (stores/graph.ts).
import { beforeEach, describe, expect, it } from 'vitest';
import { useCatalogue } from './catalogue';
import { useGraph } from './graph';
import { catalogue } from './testCatalogue';

const g = () => useGraph.getState();

beforeEach(() => {
  useCatalogue.getState().setSpecs(Object.values(catalogue));
  g().load({ nodes: [], edges: [] }, { flowId: 'f1', name: 'Flow', version: 1 });
});

describe('graph store', () => {
  it('adds and connects nodes, then undoes and redoes each step', () => {
    const a = g().addNode('input', { x: 0, y: 0 });
    const b = g().addNode('output', { x: 300, y: 0 });
    expect(g().connect({ source: a, sourceHandle: 'out', target: b, targetHandle: 'in' })).toBe(true);
    expect(g().edges).toHaveLength(1);
    expect(g().dirty).toBe(true);
    g().undo();
    expect(g().edges).toHaveLength(0);
    g().undo();
    expect(g().nodes.map((n) => n.id)).toEqual([a]);
    g().redo();
    g().redo();
    expect(g().nodes).toHaveLength(2);
    expect(g().edges).toHaveLength(1);
  });

  it('refuses an incompatible connection and explains why', () => {
    const a = g().addNode('text_src', { x: 0, y: 0 });
    const b = g().addNode('num_sink', { x: 300, y: 0 });
    expect(g().connect({ source: a, sourceHandle: 'out', target: b, targetHandle: 'in' })).toBe(false);
    expect(g().edges).toHaveLength(0);
    expect(g().hint).toMatch(/Type mismatch/);
  });

  it('coalesces typing in one field into one undo step', () => {
    const a = g().addNode('condition', { x: 0, y: 0 });
    g().updateNodeData(a, { params: { expression: 'x' } }, 'expression');
    g().updateNodeData(a, { params: { expression: 'x >' } }, 'expression');
    g().updateNodeData(a, { params: { expression: 'x > 1' } }, 'expression');
    expect(g().nodes[0].data.params.expression).toBe('x > 1');
    g().undo();
    expect(g().nodes[0].data.params).toEqual({});
  });

  it('copies, pastes and deletes a multi-selection with its edges', () => {
    const a = g().addNode('input', { x: 0, y: 0 });
    const b = g().addNode('output', { x: 300, y: 0 });
    g().connect({ source: a, sourceHandle: 'out', target: b, targetHandle: 'in' });
    g().selectAll();
    g().copy();
    g().paste();
    expect(g().nodes).toHaveLength(4);
    expect(g().edges).toHaveLength(2);
    expect(g().nodes.filter((n) => n.selected).map((n) => n.id)).toEqual(['input_2', 'output_2']);
    g().deleteSelected();
    expect(g().nodes.map((n) => n.id)).toEqual([a, b]);
    expect(g().edges).toHaveLength(1);
  });

  it('renames a node and rewires its edges, refusing reserved or taken ids', () => {
    const a = g().addNode('input', { x: 0, y: 0 });
    const b = g().addNode('output', { x: 300, y: 0 });
    g().connect({ source: a, sourceHandle: 'out', target: b, targetHandle: 'in' });
    expect(g().renameNode(a, 'secrets')).toMatch(/reserved/);
    expect(g().renameNode(a, b)).toMatch(/taken/);
    expect(g().renameNode(a, 'start')).toBeNull();
    expect(g().edges[0].source).toBe('start');
  });

  it('ignores edits in read-only (replay) mode and saves mark it clean', () => {
    g().load({ nodes: [{ id: 'in', type: 'input', position: { x: 0, y: 0 }, data: { params: {} } }], edges: [] }, { flowId: 'f1', readOnly: true });
    g().addNode('output', { x: 0, y: 0 });
    g().selectAll();
    g().deleteSelected();
    expect(g().nodes).toHaveLength(1);
    g().load({ nodes: [], edges: [] }, { flowId: 'f1' });
    g().addNode('output', { x: 0, y: 0 });
    g().markSaved(2);
    expect(g().dirty).toBe(false);
    expect(g().version).toBe(2);
  });

  it('auto-layout is one undoable edit', () => {
    const a = g().addNode('input', { x: 0, y: 0 });
    const b = g().addNode('output', { x: 0, y: 0 });
    g().connect({ source: a, sourceHandle: 'out', target: b, targetHandle: 'in' });
    g().layout();
    expect(g().nodes[1].position.x).toBeGreaterThan(g().nodes[0].position.x);
    g().undo();
    expect(g().nodes[1].position).toEqual({ x: 0, y: 0 });
  });
});
