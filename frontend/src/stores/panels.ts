// Side-panel state that must outlive the panel components (switching tabs unmounts them): the
// playground's chat history, mode and JSON inputs, and the batch panel's current batch — kept
// per flow id in a zustand store, for the session (not persisted across reloads).
import { create } from 'zustand';
import type { BatchStatus } from '../api/types';

export interface ChatMessage {
  role: 'user' | 'assistant' | 'error';
  text: string;
  runId?: string;
  status?: string;
}

export interface FlowPanels {
  mode: 'chat' | 'json';
  messages: ChatMessage[];
  draft: string;
  inputs: string;
  streaming: string;
  batchId: string | null;
  batch: BatchStatus | null;
}

const EMPTY: FlowPanels = {
  mode: 'chat',
  messages: [],
  draft: '',
  inputs: '{\n  "input_value": "hello"\n}',
  streaming: '',
  batchId: null,
  batch: null,
};

interface PanelsState {
  byFlow: Record<string, FlowPanels>;
  patch: (flowId: string, p: Partial<FlowPanels> | ((cur: FlowPanels) => Partial<FlowPanels>)) => void;
  addMessage: (flowId: string, m: ChatMessage) => void;
}

export const usePanels = create<PanelsState>((set) => ({
  byFlow: {},
  patch: (flowId, p) =>
    set((s) => {
      const cur = s.byFlow[flowId] ?? EMPTY;
      return { byFlow: { ...s.byFlow, [flowId]: { ...cur, ...(typeof p === 'function' ? p(cur) : p) } } };
    }),
  addMessage: (flowId, m) =>
    set((s) => {
      const cur = s.byFlow[flowId] ?? EMPTY;
      return { byFlow: { ...s.byFlow, [flowId]: { ...cur, messages: [...cur.messages, m] } } };
    }),
}));

export function useFlowPanels(flowId: string): FlowPanels {
  return usePanels((s) => s.byFlow[flowId] ?? EMPTY);
}
