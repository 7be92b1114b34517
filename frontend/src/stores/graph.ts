// THE graph store (zustand, as React Flow itself uses): nodes, edges, selection, undo/redo,
// clipboard, validation errors and the dirty flag of the flow open on the canvas.
// Canvas components only read it and call its actions: `onNodesChange/onEdgesChange` (React Flow
// changes), `connect` (typed-port check via graphLogic.checkConnection, refusal -> `hint`),
// `addNode`, `updateNodeData`, `deleteSelected`, `copy/paste`, `undo/redo`, `layout`. Pages call
// `load` (a flow, a version or a draft) and `markSaved`; side effects (save, draft, run) live in
// pages/stores outside the canvas. Every edit calls `edit()`, which records history first; a mouse
// drag records at its start (`beginDrag`), a keyboard move (arrow keys on a focused node: position
// changes settling without a drag) records one undo step per run of presses on the same nodes.
import { applyEdgeChanges, applyNodeChanges } from '@xyflow/react';
import type { EdgeChange, NodeChange, XYPosition } from '@xyflow/react';
import { create } from 'zustand';
import type { FlowDefinition, NodeData } from '../api/types';
import { useCatalogue } from './catalogue';
import {
  autoLayout,
  checkConnection,
  copySelection,
  fromDefinition,
  newEdgeId,
  newNodeId,
  pasteClipboard,
  toDefinition,
  type Clipboard,
  type ConnectionLike,
  type FlowEdge,
  type FlowNode,
} from './graphLogic';
import { emptyHistory, record, redo, snapshot, undo, type History } from './history';

export interface LoadOptions {
  flowId: string | null;
  name?: string;
  version?: number;
  readOnly?: boolean;
  dirty?: boolean;
}

export interface GraphState {
  flowId: string | null;
  name: string;
  version: number;
  readOnly: boolean;
  nodes: FlowNode[];
  edges: FlowEdge[];
  dirty: boolean;
  history: History;
  clipboard: Clipboard | null;
  hint: string | null;
  nodeErrors: Record<string, string[]>;
  generalErrors: string[];
  load: (def: FlowDefinition, opts: LoadOptions) => void;
  definition: () => FlowDefinition;
  markSaved: (version: number, name?: string) => void;
  setName: (name: string) => void;
  onNodesChange: (changes: NodeChange<FlowNode>[]) => void;
  onEdgesChange: (changes: EdgeChange[]) => void;
  connect: (c: ConnectionLike) => boolean;
  addNode: (type: string, position: XYPosition, params?: Record<string, unknown>) => string;
  updateNodeData: (id: string, patch: Partial<NodeData>, coalesceKey?: string) => void;
  renameNode: (oldId: string, newId: string) => string | null;
  deleteSelected: () => void;
  selectOnly: (id: string | null) => void;
  selectAll: () => void;
  copy: () => void;
  paste: () => void;
  undo: () => void;
  redo: () => void;
  layout: () => void;
  beginDrag: () => void;
  setHint: (hint: string | null) => void;
  setErrors: (nodeErrors: Record<string, string[]>, general: string[]) => void;
}

/** True between a mouse drag's start and its settling position change. */
let dragActive = false;

export const useGraph = create<GraphState>((set, get) => {
  /** Records an undo snapshot, applies the edit, marks the flow dirty and clears stale errors. */
  const edit = (fn: (s: GraphState) => Partial<GraphState>, coalesceKey: string | null = null) => {
    const s = get();
    if (s.readOnly) return;
    const history = record(s.history, snapshot(s.nodes, s.edges), coalesceKey);
    set({ ...fn(s), history, dirty: true });
  };

  return {
    flowId: null,
    name: '',
    version: 0,
    readOnly: false,
    nodes: [],
    edges: [],
    dirty: false,
    history: emptyHistory(),
    clipboard: null,
    hint: null,
    nodeErrors: {},
    generalErrors: [],

    load: (def, opts) => {
      const { nodes, edges } = fromDefinition(def);
      set({
        flowId: opts.flowId,
        name: opts.name ?? get().name,
        version: opts.version ?? 0,
        readOnly: opts.readOnly ?? false,
        nodes,
        edges,
        dirty: opts.dirty ?? false,
        history: emptyHistory(),
        hint: null,
        nodeErrors: {},
        generalErrors: [],
      });
    },
    definition: () => toDefinition(get().nodes, get().edges),
    markSaved: (version, name) =>
      set((s) => ({ version, name: name ?? s.name, dirty: false, nodeErrors: {}, generalErrors: [] })),
    setName: (name) => set({ name }),

    onNodesChange: (changes) => {
      const s = get();
      const allowed = s.readOnly
        ? changes.filter((c) => c.type === 'select' || c.type === 'dimensions')
        : changes.filter((c) => c.type !== 'remove');
      if (!allowed.length) return;
      const settled = allowed.filter((c) => c.type === 'position' && c.dragging === false);
      let history = s.history;
      if (settled.length && !dragActive && !s.readOnly) {
        const ids = settled.map((c) => (c.type === 'position' ? c.id : '')).sort().join(',');
        history = record(history, snapshot(s.nodes, s.edges), `keymove:${ids}`);
      }
      if (settled.length) dragActive = false;
      set({ nodes: applyNodeChanges(allowed, s.nodes), dirty: s.dirty || settled.length > 0, history });
    },
    onEdgesChange: (changes) => {
      const allowed = changes.filter((c) => c.type === 'select');
      if (allowed.length) set({ edges: applyEdgeChanges(allowed, get().edges) });
    },
    beginDrag: () => {
      const s = get();
      if (s.readOnly) return;
      dragActive = true;
      set({ history: record(s.history, snapshot(s.nodes, s.edges)) });
    },

    connect: (c) => {
      const s = get();
      if (s.readOnly) return false;
      const check = checkConnection(c, s.nodes, s.edges, useCatalogue.getState().byType);
      if (!check.ok) {
        set({ hint: check.reason });
        return false;
      }
      edit((st) => ({
        hint: null,
        edges: [
          ...st.edges,
          {
            id: newEdgeId(st.edges.map((e) => e.id)),
            source: c.source!,
            target: c.target!,
            sourceHandle: c.sourceHandle ?? 'out',
            targetHandle: c.targetHandle ?? 'in',
          },
        ],
      }));
      return true;
    },

    addNode: (type, position, params = {}) => {
      const id = newNodeId(type, get().nodes.map((n) => n.id));
      edit((s) => ({
        nodes: [
          ...s.nodes.map((n) => ({ ...n, selected: false })),
          { id, type, position, selected: true, data: { params } },
        ],
      }));
      return id;
    },

    updateNodeData: (id, patch, coalesceKey) =>
      edit(
        (s) => ({
          nodes: s.nodes.map((n) => (n.id === id ? { ...n, data: { ...n.data, ...patch } } : n)),
          nodeErrors: { ...s.nodeErrors, [id]: [] },
        }),
        coalesceKey ? `${id}:${coalesceKey}` : null,
      ),

    renameNode: (oldId, newId) => {
      const s = get();
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(newId)) return 'Use letters, digits and _ (not first).';
      if (newId !== oldId && s.nodes.some((n) => n.id === newId)) return 'That id is taken.';
      if (['inputs', 'input', 'secrets', 'run', 'item'].includes(newId)) return 'That id is reserved.';
      if (newId === oldId) return null;
      edit((st) => ({
        nodes: st.nodes.map((n) => (n.id === oldId ? { ...n, id: newId } : n)),
        edges: st.edges.map((e) => ({
          ...e,
          source: e.source === oldId ? newId : e.source,
          target: e.target === oldId ? newId : e.target,
        })),
      }));
      return null;
    },

    deleteSelected: () => {
      const s = get();
      const gone = new Set(s.nodes.filter((n) => n.selected).map((n) => n.id));
      const edgesLeft = s.edges.filter(
        (e) => !e.selected && !gone.has(e.source) && !gone.has(e.target),
      );
      if (!gone.size && edgesLeft.length === s.edges.length) return;
      edit((st) => ({ nodes: st.nodes.filter((n) => !gone.has(n.id)), edges: edgesLeft }));
    },

    selectOnly: (id) =>
      set((s) => ({
        nodes: s.nodes.map((n) => ({ ...n, selected: n.id === id })),
        edges: s.edges.map((e) => ({ ...e, selected: false })),
      })),
    selectAll: () => set((s) => ({ nodes: s.nodes.map((n) => ({ ...n, selected: true })) })),

    copy: () => {
      const clip = copySelection(get().nodes, get().edges);
      if (clip) set({ clipboard: clip });
    },
    paste: () => {
      const clip = get().clipboard;
      if (!clip) return;
      edit((s) => {
        const pasted = pasteClipboard(clip, s.nodes, s.edges);
        return {
          nodes: [...s.nodes.map((n) => ({ ...n, selected: false })), ...pasted.nodes],
          edges: [...s.edges, ...pasted.edges],
          clipboard: { nodes: pasted.nodes, edges: pasted.edges },
        };
      });
    },

    undo: () => {
      const s = get();
      if (s.readOnly) return;
      const [history, prev] = undo(s.history, snapshot(s.nodes, s.edges));
      if (prev) set({ history, nodes: prev.nodes, edges: prev.edges, dirty: true });
    },
    redo: () => {
      const s = get();
      if (s.readOnly) return;
      const [history, next] = redo(s.history, snapshot(s.nodes, s.edges));
      if (next) set({ history, nodes: next.nodes, edges: next.edges, dirty: true });
    },
    layout: () => edit((s) => ({ nodes: autoLayout(s.nodes, s.edges) })),

    setHint: (hint) => set({ hint }),
    setErrors: (nodeErrors, generalErrors) => set({ nodeErrors, generalErrors }),
  };
});
