// Every API call the designer makes, one function per endpoint (DESIGN.md §3), all through
// http.ts `request()`. Stores and panels call these; streaming calls live in sse.ts.
import { request, rawRequest } from './http';
import type {
  ApiKey,
  ApiKeyCreated,
  BatchStatus,
  Flow,
  FlowDefinition,
  FlowExport,
  FlowVersion,
  FlowVersionOut,
  NodeSpec,
  OpsStats,
  RunCreated,
  RunPage,
  RunWithSteps,
  Secret,
  User,
} from './types';

const j = (body: unknown) => ({ method: 'POST', body });

export const auth = {
  login: (email: string, password: string) =>
    request<{ access_token: string }>('/api/auth/login', j({ email, password })),
  logout: () => request<void>('/api/auth/logout', { method: 'POST' }),
  me: () => request<User>('/api/auth/me'),
};

export const flows = {
  list: () => request<Flow[]>('/api/v1/flows'),
  get: (id: string, signal?: AbortSignal) => request<Flow>(`/api/v1/flows/${id}`, { signal }),
  create: (name: string, definition: FlowDefinition, description = '') =>
    request<Flow>('/api/v1/flows', j({ name, definition, description })),
  /** `base_version`: the version the edit is based on; a newer flow answers 409 (ApiError). */
  update: (
    id: string,
    patch: { name?: string; description?: string; definition?: FlowDefinition; base_version?: number },
    signal?: AbortSignal,
  ) => request<Flow>(`/api/v1/flows/${id}`, { method: 'PUT', body: patch, signal }),
  remove: (id: string) => request<void>(`/api/v1/flows/${id}`, { method: 'DELETE' }),
  duplicate: (id: string, name?: string) =>
    request<Flow>(`/api/v1/flows/${id}/duplicate`, j(name ? { name } : {})),
  exportJson: (id: string) => request<FlowExport>(`/api/v1/flows/${id}/export`),
  importJson: (data: FlowExport) => request<Flow>('/api/v1/flows/import', j(data)),
  versions: (id: string) => request<FlowVersion[]>(`/api/v1/flows/${id}/versions`),
  version: (id: string, version: number, signal?: AbortSignal) =>
    request<FlowVersionOut>(`/api/v1/flows/${id}/versions/${version}`, { signal }),
  restore: (id: string, version: number) =>
    request<Flow>(`/api/v1/flows/${id}/versions/${version}/restore`, { method: 'POST' }),
  publish: (id: string, version: number) => request<Flow>(`/api/v1/flows/${id}/publish`, j({ version })),
  unpublish: (id: string) => request<Flow>(`/api/v1/flows/${id}/unpublish`, { method: 'POST' }),
};

export const nodes = { catalogue: () => request<NodeSpec[]>('/api/v1/nodes') };

export const secrets = { list: () => request<Secret[]>('/api/v1/secrets') };

export const apiKeys = {
  list: () => request<ApiKey[]>('/api/v1/api-keys'),
  create: (name: string) => request<ApiKeyCreated>('/api/v1/api-keys', j({ name })),
  revoke: (id: string) => request<void>(`/api/v1/api-keys/${id}`, { method: 'DELETE' }),
};

export interface RunFilter {
  flow_id?: string;
  status?: string;
  limit?: number;
  cursor?: string | null;
}

export const runs = {
  /** `version` pins the run (the designer runs what it shows, not the published version). */
  start: (flowId: string, inputs: Record<string, unknown>, version?: number) =>
    request<RunCreated>(`/api/v1/flows/${flowId}/runs`, j(version ? { inputs, version } : { inputs })),
  list: (f: RunFilter, signal?: AbortSignal) => {
    const q = new URLSearchParams();
    if (f.flow_id) q.set('flow_id', f.flow_id);
    if (f.status) q.set('status', f.status);
    q.set('limit', String(f.limit ?? 50));
    if (f.cursor) q.set('cursor', f.cursor);
    return request<RunPage>(`/api/v1/runs?${q.toString()}`, { signal });
  },
  get: (id: string, signal?: AbortSignal) => request<RunWithSteps>(`/api/v1/runs/${id}`, { signal }),
  cancel: (id: string) => request<{ status: string }>(`/api/v1/runs/${id}/cancel`, { method: 'POST' }),
  resume: (id: string) => request<{ status: string }>(`/api/v1/runs/${id}/resume`, { method: 'POST' }),
  fork: (id: string, fromNodeId: string, inputs?: Record<string, unknown>) =>
    request<{ id: string; status: string }>(
      `/api/v1/runs/${id}/fork`,
      j(inputs ? { from_node_id: fromNodeId, inputs } : { from_node_id: fromNodeId }),
    ),
  signal: (id: string, nodeId: string, payload: unknown, itemIndex = 0) =>
    request<{ delivered: boolean; status: string }>(
      `/api/v1/runs/${id}/signal`,
      j({ node_id: nodeId, payload, item_index: itemIndex }),
    ),
};

export const batches = {
  /** Uploads a JSONL or CSV file (or a JSON list) as the raw body, typed by its content type. */
  create: (flowId: string, file: Blob, contentType: string, version?: number) =>
    request<{ id: string }>(`/api/v1/flows/${flowId}/batches${version ? `?version=${version}` : ''}`, {
      method: 'POST',
      raw: file,
      headers: { 'content-type': contentType },
    }),
  get: (id: string) => request<BatchStatus>(`/api/v1/batches/${id}`),
  results: async (id: string) => (await rawRequest(`/api/v1/batches/${id}/results`)).text(),
};

export const ops = {
  stats: (minutes = 60, bucketSeconds = 60) =>
    request<OpsStats>(`/api/v1/ops/stats?minutes=${minutes}&bucket_seconds=${bucketSeconds}`),
};
