// The node catalogue (GET /api/v1/nodes) in a small zustand store: `load()` once per session,
// `byType` for the canvas (ports, titles) and the config panel (params JSON Schema).
import { create } from 'zustand';
import { nodes as nodesApi } from '../api/endpoints';
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

export const useCatalogue = create<CatalogueState>((set, get) => ({
  specs: [],
  byType: {},
  loaded: false,
  error: null,
  setSpecs: (specs) =>
    set({ specs, byType: Object.fromEntries(specs.map((s) => [s.type, s])), loaded: true }),
  load: async () => {
    if (get().loaded) return;
    try {
      get().setSpecs(await nodesApi.catalogue());
    } catch (err) {
      set({ error: String(err) });
    }
  },
}));
