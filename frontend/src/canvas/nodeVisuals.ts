// Look of nodes by category (accent colour and glyph) and the one-line summary a node card shows
// of its params; FlowNode.tsx and Palette.tsx read these (pure data, no React).
import type { NodeData } from '../api/types';

export const CATEGORY_STYLE: Record<string, { color: string; glyph: string; label: string }> = {
  io: { color: '#3b82f6', glyph: '⇄', label: 'Input / output' },
  logic: { color: '#f59e0b', glyph: '◇', label: 'Logic & control' },
  text: { color: '#10b981', glyph: '¶', label: 'Text' },
  http: { color: '#0ea5e9', glyph: '⇅', label: 'HTTP' },
  llm: { color: '#8b5cf6', glyph: '✦', label: 'LLM' },
  rag: { color: '#ec4899', glyph: '❖', label: 'Retrieval' },
  code: { color: '#475569', glyph: '{}', label: 'Code' },
  data: { color: '#14b8a6', glyph: '⋮', label: 'Data' },
  flow: { color: '#f97316', glyph: '↻', label: 'Flow control' },
  human: { color: '#a855f7', glyph: '☺', label: 'Human' },
};

export function categoryStyle(category: string | undefined) {
  return CATEGORY_STYLE[category ?? ''] ?? { color: '#64748b', glyph: '•', label: category ?? 'Other' };
}

const SUMMARY_KEYS = ['template', 'prompt', 'url', 'expression', 'seconds', 'message', 'text', 'model'];

export function paramSummary(data: NodeData): string {
  const params = data.params ?? {};
  for (const key of SUMMARY_KEYS) {
    const v = params[key];
    if (v !== undefined && v !== '' && v !== null) {
      const text = typeof v === 'string' ? v : JSON.stringify(v);
      const prefix = key === 'url' && typeof params.method === 'string' ? `${params.method} ` : '';
      const s = `${prefix}${text}`.replace(/\s+/g, ' ');
      return key === 'seconds' ? `${s} s` : s.length > 42 ? `${s.slice(0, 41)}…` : s;
    }
  }
  return '';
}
