// Pure graph logic behind the graph store (stores/graph.ts calls every function here; vitest
// covers them in graphLogic.test.ts): definition <-> React Flow nodes/edges (`toDefinition`,
// `fromDefinition`: same shape, transient UI fields dropped), typed-port connection rules
// (`checkConnection` -> refusal hint), fresh template-safe node ids (`newNodeId`), copy/paste of a
// selection with remapped ids (`copySelection`, `pasteClipboard`) and dagre auto-layout.
import dagre from '@dagrejs/dagre';
import type { Edge, Node } from '@xyflow/react';
import type { DefEdge, DefNode, FlowDefinition, NodeData, NodeSpec, PortSpec } from '../api/types';

export type FlowNode = Node<NodeData>;
export type FlowEdge = Edge;
export type Catalogue = Record<string, NodeSpec>;

/** Node ids that templates reserve (`{{ inputs.x }}`, `{{ secrets.X }}`...): never generated. */
export const RESERVED_IDS = new Set(['inputs', 'input', 'secrets', 'run', 'item']);

export function cleanData(data: NodeData): NodeData {
  const out: NodeData = { params: { ...(data.params ?? {}) } };
  if (data.label) out.label = data.label;
  if (data.retry) out.retry = data.retry;
  if (typeof data.timeout_s === 'number') out.timeout_s = data.timeout_s;
  return out;
}

export function toDefinition(nodes: FlowNode[], edges: FlowEdge[]): FlowDefinition {
  return {
    nodes: nodes.map(
      (n): DefNode => ({
        id: n.id,
        type: n.type ?? 'noop',
        position: { x: Math.round(n.position.x), y: Math.round(n.position.y) },
        data: cleanData(n.data),
      }),
    ),
    edges: edges.map(
      (e): DefEdge => ({
        id: e.id,
        source: e.source,
        sourceHandle: e.sourceHandle ?? null,
        target: e.target,
        targetHandle: e.targetHandle ?? null,
      }),
    ),
  };
}

export function fromDefinition(def: FlowDefinition | null | undefined): {
  nodes: FlowNode[];
  edges: FlowEdge[];
} {
  const nodes = (def?.nodes ?? []).map(
    (n): FlowNode => ({
      id: n.id,
      type: n.type,
      position: { x: n.position?.x ?? 0, y: n.position?.y ?? 0 },
      data: cleanData(n.data ?? { params: {} }),
    }),
  );
  const edges = (def?.edges ?? []).map(
    (e, i): FlowEdge => ({
      id: e.id ?? `e${i}`,
      source: e.source,
      sourceHandle: e.sourceHandle ?? 'out',
      target: e.target,
      targetHandle: e.targetHandle ?? 'in',
    }),
  );
  return { nodes, edges };
}

/** Output ports of a node: the catalogue's, or for a router (params.routes) its route names plus
 * the default port, mirroring the server's `router_ports`. */
export function outputsFor(spec: NodeSpec | undefined, params: Record<string, unknown>): PortSpec[] {
  const routes = params?.routes;
  if (spec && Array.isArray(routes)) {
    const names = routes.map((r) => String((r as { name?: unknown }).name ?? '')).filter(Boolean);
    const dflt = typeof params.default === 'string' && params.default ? params.default : 'default';
    return [...new Set([...names, dflt])].map((name) => ({ name, type: 'any' }));
  }
  return spec?.outputs ?? [{ name: 'out', type: 'any' }];
}

export function typesCompatible(out: string, inp: string): boolean {
  return out === 'any' || inp === 'any' || out === inp;
}

export interface ConnectionLike {
  source: string | null;
  target: string | null;
  sourceHandle?: string | null;
  targetHandle?: string | null;
}

export type ConnectionCheck = { ok: true } | { ok: false; reason: string };

function reaches(edges: FlowEdge[], from: string, to: string): boolean {
  const next = new Map<string, string[]>();
  for (const e of edges) next.set(e.source, [...(next.get(e.source) ?? []), e.target]);
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length) {
    const id = stack.pop() as string;
    if (id === to) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(next.get(id) ?? []));
  }
  return false;
}

export function checkConnection(
  c: ConnectionLike,
  nodes: FlowNode[],
  edges: FlowEdge[],
  catalogue: Catalogue,
): ConnectionCheck {
  const src = nodes.find((n) => n.id === c.source);
  const dst = nodes.find((n) => n.id === c.target);
  if (!src || !dst) return { ok: false, reason: 'Both ends must be nodes on the canvas.' };
  if (src.id === dst.id) return { ok: false, reason: 'A node cannot connect to itself.' };
  const sSpec = catalogue[src.type ?? ''];
  const tSpec = catalogue[dst.type ?? ''];
  const outPort = outputsFor(sSpec, src.data.params).find((p) => p.name === (c.sourceHandle ?? 'out'));
  const inPort = tSpec?.inputs.find((p) => p.name === (c.targetHandle ?? 'in'));
  if (!outPort) return { ok: false, reason: `${src.id} has no output port "${c.sourceHandle}".` };
  if (!inPort) return { ok: false, reason: `${dst.id} has no input port "${c.targetHandle}".` };
  if (!typesCompatible(outPort.type, inPort.type)) {
    return {
      ok: false,
      reason: `Type mismatch: ${src.id}.${outPort.name} gives ${outPort.type}, ${dst.id}.${inPort.name} needs ${inPort.type}.`,
    };
  }
  const dup = edges.some(
    (e) =>
      e.source === src.id &&
      e.target === dst.id &&
      (e.sourceHandle ?? 'out') === outPort.name &&
      (e.targetHandle ?? 'in') === inPort.name,
  );
  if (dup) return { ok: false, reason: 'These ports are already connected.' };
  if (reaches(edges, dst.id, src.id)) {
    return { ok: false, reason: `That would make a cycle (${dst.id} already leads to ${src.id}).` };
  }
  return { ok: true };
}

export function newNodeId(type: string, taken: Iterable<string>): string {
  const used = new Set(taken);
  const base = type.replace(/[^A-Za-z0-9_]/g, '_').replace(/^([^A-Za-z_])/, 'n_$1') || 'node';
  for (let i = 1; ; i++) {
    const id = `${base}_${i}`;
    if (!used.has(id) && !RESERVED_IDS.has(id)) return id;
  }
}

export function newEdgeId(taken: Iterable<string>): string {
  const used = new Set(taken);
  for (let i = 1; ; i++) if (!used.has(`e${i}`)) return `e${i}`;
}

export interface Clipboard {
  nodes: FlowNode[];
  edges: FlowEdge[];
}

export function copySelection(nodes: FlowNode[], edges: FlowEdge[]): Clipboard | null {
  const picked = nodes.filter((n) => n.selected);
  if (!picked.length) return null;
  const ids = new Set(picked.map((n) => n.id));
  return {
    nodes: picked.map((n) => ({ ...n, data: cleanData(n.data), selected: false })),
    edges: edges.filter((e) => ids.has(e.source) && ids.has(e.target)),
  };
}

/** New copies of the clipboard, shifted by `offset`, selected, with fresh node and edge ids. */
export function pasteClipboard(
  clip: Clipboard,
  nodes: FlowNode[],
  edges: FlowEdge[],
  offset = { x: 40, y: 40 },
): Clipboard {
  const taken = new Set(nodes.map((n) => n.id));
  const remap = new Map<string, string>();
  const newNodes = clip.nodes.map((n) => {
    const id = newNodeId(n.type ?? 'node', taken);
    taken.add(id);
    remap.set(n.id, id);
    return {
      ...n,
      id,
      selected: true,
      position: { x: n.position.x + offset.x, y: n.position.y + offset.y },
      data: cleanData(n.data),
    };
  });
  const edgeIds = new Set(edges.map((e) => e.id));
  const newEdges = clip.edges.map((e) => {
    const id = newEdgeId(edgeIds);
    edgeIds.add(id);
    return { ...e, id, source: remap.get(e.source)!, target: remap.get(e.target)!, selected: false };
  });
  return { nodes: newNodes, edges: newEdges };
}

export const NODE_W = 220;
export const NODE_H = 84;

/** Left-to-right layered layout (dagre); returns nodes with new positions, same order. */
export function autoLayout(nodes: FlowNode[], edges: FlowEdge[], direction: 'LR' | 'TB' = 'LR'): FlowNode[] {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: direction, nodesep: 40, ranksep: 90, marginx: 20, marginy: 20 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of nodes) {
    g.setNode(n.id, { width: n.measured?.width ?? NODE_W, height: n.measured?.height ?? NODE_H });
  }
  for (const e of edges) g.setEdge(e.source, e.target);
  dagre.layout(g);
  return nodes.map((n) => {
    const p = g.node(n.id);
    const w = n.measured?.width ?? NODE_W;
    const h = n.measured?.height ?? NODE_H;
    return { ...n, position: { x: Math.round(p.x - w / 2), y: Math.round(p.y - h / 2) } };
  });
}

/** Maps 422 problem errors to the nodes (and edges) they name, for red badges on the canvas. */
export function errorsByNode(
  errors: { path?: string; reason: string; node_id?: string | null; edge_id?: string | null }[],
  edges: FlowEdge[],
): { nodes: Record<string, string[]>; general: string[] } {
  const out: Record<string, string[]> = {};
  const general: string[] = [];
  for (const e of errors) {
    let id = e.node_id ?? null;
    if (!id && e.edge_id) id = edges.find((x) => x.id === e.edge_id)?.target ?? null;
    if (!id && e.path) {
      const m = /^definition\.edges\[(\d+)\]/.exec(e.path);
      if (m) id = edges[Number(m[1])]?.target ?? null;
    }
    if (id) (out[id] ??= []).push(e.reason);
    else general.push(e.reason);
  }
  return { nodes: out, general };
}
