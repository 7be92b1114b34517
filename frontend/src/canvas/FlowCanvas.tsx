// The React Flow canvas bound to the graph store: nodes/edges and their changes, typed-port
// connections (isValidConnection for live feedback; a refused drop shows the store's `hint`),
// drag & drop from the palette (onDrop -> graph.addNode at the drop point), selection box and
// multi-select, minimap, controls and background. No side effects beyond the graph store: saving
// and running are the page's business. `onReady` hands the page the React Flow instance.
// Accessibility: every node gets an aria-label ("<title> node <id>, <status>") for React Flow's
// focusable wrapper, and React Flow's own a11y descriptions (keyboard help, live announcements)
// stay on, worded for this editor (ARIA_LABELS).
import {
  Background,
  BackgroundVariant,
  Controls,
  MiniMap,
  ReactFlow,
  type Connection,
  type Edge,
  type FinalConnectionState,
  type NodeTypes,
  type ReactFlowInstance,
} from '@xyflow/react';
import { useCallback, useMemo, useRef } from 'react';
import { useCatalogue } from '../stores/catalogue';
import { useGraph } from '../stores/graph';
import { checkConnection, type FlowEdge, type FlowNode as FlowNodeT } from '../stores/graphLogic';
import { defaultParams } from '../panels/schema';
import { STATUS_COLORS } from '../stores/runState';
import { useRunView } from '../stores/runView';
import { FlowNode } from './FlowNode';
import { categoryStyle } from './nodeVisuals';
import { DND_TYPE } from './Palette';

export type FlowInstance = ReactFlowInstance<FlowNodeT, FlowEdge>;

const ARIA_LABELS = {
  'node.a11yDescription.default':
    'Press Enter or Space to select a node, arrow keys to move it (Ctrl+Z undoes), Delete to remove it, Escape to cancel.',
  'edge.a11yDescription.default': 'Press Enter or Space to select an edge, Delete to remove it, Escape to cancel.',
};

/** The node with its aria-label; cached per node object so unchanged nodes keep their identity. */
const labelled = new WeakMap<FlowNodeT, { key: string; node: FlowNodeT }>();
function withAriaLabel(n: FlowNodeT, title: string, status: string | undefined): FlowNodeT {
  const label = `${(n.data.label as string | undefined) || title} node ${n.id}${status ? `, ${status}` : ''}`;
  const hit = labelled.get(n);
  if (hit && hit.key === label) return hit.node;
  const node = { ...n, ariaLabel: label };
  labelled.set(n, { key: label, node });
  return node;
}

interface Props {
  onReady?: (rf: FlowInstance) => void;
  onNodeClick?: (id: string) => void;
}

export function FlowCanvas({ onReady, onNodeClick }: Props) {
  const nodes = useGraph((s) => s.nodes);
  const edges = useGraph((s) => s.edges);
  const readOnly = useGraph((s) => s.readOnly);
  const hint = useGraph((s) => s.hint);
  const { onNodesChange, onEdgesChange, connect, setHint, beginDrag, addNode } = useGraph.getState();
  const specs = useCatalogue((s) => s.specs);
  const byType = useCatalogue((s) => s.byType);
  const runStates = useRunView((s) => s.states);

  const nodeTypes = useMemo<NodeTypes>(
    () => Object.fromEntries([...specs.map((s) => [s.type, FlowNode]), ['default', FlowNode]]),
    [specs],
  );

  const ariaNodes = useMemo(
    () => nodes.map((n) => withAriaLabel(n, byType[n.type ?? '']?.title ?? n.type ?? 'node', runStates[n.id]?.status)),
    [nodes, byType, runStates],
  );

  const styledEdges = useMemo(
    () =>
      edges.map((e) => {
        const st = runStates[e.source]?.status;
        const active = st === 'succeeded' && runStates[e.target] !== undefined;
        return st
          ? {
              ...e,
              animated: runStates[e.target]?.status === 'running',
              style: { stroke: active ? STATUS_COLORS.succeeded : undefined, strokeWidth: active ? 2.2 : undefined },
            }
          : e;
      }),
    [edges, runStates],
  );

  const isValidConnection = useCallback(
    (c: Connection | Edge) => {
      const s = useGraph.getState();
      return checkConnection(c, s.nodes, s.edges, useCatalogue.getState().byType).ok;
    },
    [],
  );

  const onConnectEnd = useCallback(
    (_: MouseEvent | TouchEvent, state: FinalConnectionState) => {
      if (state.isValid !== false || !state.toNode || !state.fromNode) return;
      const fromSource = state.fromHandle?.type !== 'target';
      const c = fromSource
        ? { source: state.fromNode.id, sourceHandle: state.fromHandle?.id, target: state.toNode.id, targetHandle: state.toHandle?.id }
        : { source: state.toNode.id, sourceHandle: state.toHandle?.id, target: state.fromNode.id, targetHandle: state.fromHandle?.id };
      connect(c);
    },
    [connect],
  );

  const onDrop = useCallback(
    (e: React.DragEvent, rf: FlowInstance | null) => {
      const type = e.dataTransfer.getData(DND_TYPE);
      if (!type || !rf || readOnly) return;
      e.preventDefault();
      const pos = rf.screenToFlowPosition({ x: e.clientX, y: e.clientY });
      const spec = useCatalogue.getState().byType[type];
      addNode(type, { x: pos.x - 100, y: pos.y - 30 }, spec ? defaultParams(spec.params_schema) : {});
    },
    [addNode, readOnly],
  );

  const instance = useRef<FlowInstance | null>(null);
  return (
    <div
      className="canvas-wrap"
      onDragOver={(e) => {
        if (e.dataTransfer.types.includes(DND_TYPE)) {
          e.preventDefault();
          e.dataTransfer.dropEffect = 'move';
        }
      }}
      onDrop={(e) => onDrop(e, instance.current)}
      data-testid="canvas"
    >
      <ReactFlow<FlowNodeT, FlowEdge>
        nodes={ariaNodes}
        edges={styledEdges}
        ariaLabelConfig={ARIA_LABELS}
        nodeTypes={nodeTypes}
        onNodesChange={onNodesChange}
        onEdgesChange={onEdgesChange}
        onConnect={(c) => connect(c)}
        onConnectEnd={onConnectEnd}
        isValidConnection={isValidConnection}
        onNodeDragStart={() => beginDrag()}
        onSelectionDragStart={() => beginDrag()}
        onNodeClick={(_, n) => onNodeClick?.(n.id)}
        onInit={(rf) => {
          instance.current = rf;
          onReady?.(rf);
        }}
        nodesDraggable={!readOnly}
        nodesConnectable={!readOnly}
        deleteKeyCode={null}
        multiSelectionKeyCode={['Meta', 'Control', 'Shift']}
        selectionKeyCode="Shift"
        fitView
        fitViewOptions={{ padding: 0.2, maxZoom: 1.2 }}
        minZoom={0.1}
        proOptions={{ hideAttribution: true }}
        defaultEdgeOptions={{ type: 'smoothstep' }}
      >
        <Background variant={BackgroundVariant.Dots} gap={18} size={1.2} color="#cbd5e1" />
        <MiniMap
          style={{ width: 180, height: 120 }}
          pannable
          zoomable
          nodeColor={(n) => {
            const st = runStates[n.id]?.status;
            return st ? STATUS_COLORS[st] : categoryStyle(byType[n.type ?? '']?.category).color;
          }}
          maskColor="rgba(241,245,249,0.7)"
        />
        <Controls showInteractive={false} />
      </ReactFlow>
      {hint && (
        <div className="canvas-hint" role="alert" onClick={() => setHint(null)}>
          <strong>Can’t connect:</strong> {hint} <span className="muted">(click to dismiss)</span>
        </div>
      )}
    </div>
  );
}
