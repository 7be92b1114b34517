// The node catalogue (GET /api/v1/nodes) in a small zustand store: `load()` once per session,
// (concurrent callers share one request; after a failure `error` is set and `load()` retries),
// `byType` for the canvas (ports, titles) and the config panel (params JSON Schema).
import { create } from 'zustand';
import { nodes as nodesApi } from '../api/endpoints';
import { describeError } from '../api/errors';
import type { NodeSpec } from '../api/types';
import type { Catalogue } from './graphLogic';

interface CatalogueState {
  specs: NodeSpec[];
  byType: Catalogue;
  loaded: boolean;
  error: string | null;
  load: () => Promise<void>;
  setSpecs: (specs: NodeSpec[]) => void;
}

let inflight: Promise<void> | null = null;

export const useCatalogue = create<CatalogueState>((set, get) => ({
  specs: [],
  byType: {},
  loaded: false,
  error: null,
  setSpecs: (specs) =>
    set({ specs, byType: Object.fromEntries(specs.map((s) => [s.type, s])), loaded: true }),
  load: () => {
    if (get().loaded) return Promise.resolve();
    if (!inflight) set({ error: null });
    inflight ??= nodesApi
      .catalogue()
      .then((specs) => get().setSpecs(specs))
      .catch((err: unknown) => set({ error: describeError(err) ?? 'cancelled' }))
      .finally(() => (inflight = null));
    return inflight;
  },
}));
