// Every API call the designer makes, one function per endpoint (DESIGN.md §3), typed from the
// OpenAPI spec through typed.ts `call()` (path and query parameters, JSON bodies and, where the
// API declares them, answers). Answers the API still declares as free-form dicts (flows, runs,
// the node catalogue) are described once here with `described<T>()` and types.ts; routes not in
// the spec yet (providers) go through http.ts `request<T>()` with types.ts shapes. Stores and
// panels call these; following a run (SSE) lives in follow.ts.
import { rawRequest, request } from './http';
import { call, described, fillPath } from './typed';
import type { Flow, FlowDefinition, FlowExport, FlowPatch, FlowVersion, NodeSpec, Provider, ProviderCreate, ProviderPatch, RunPage, RunWithSteps } from './types';

export const auth = {
  login: (email: string, password: string) => call('post', '/api/auth/login', { body: { email, password } }),
  logout: () => call('post', '/api/auth/logout'),
  me: () => call('get', '/api/auth/me'),
};

const flowPath = (id: string) => ({ flow_id: id });

/** A JSON body for routes that decode an optional body themselves (the spec declares none). */
const optionalJson = (body: unknown) => ({ raw: JSON.stringify(body), headers: { 'content-type': 'application/json' } });

export const flows = {
  list: () => described<Flow[]>(call('get', '/api/v1/flows')),
  get: (id: string, signal?: AbortSignal) => described<Flow>(call('get', '/api/v1/flows/{flow_id}', { path: flowPath(id), signal })),
  create: (name: string, definition: FlowDefinition, description = '') =>
    described<Flow>(call('post', '/api/v1/flows', { body: { name, definition: { ...definition }, description } })),
  /** `base_version`: the version the edit is based on; a newer flow answers 409 (ApiError). */
  update: (
    id: string,
    patch: Omit<FlowPatch, 'definition'> & { definition?: FlowDefinition },
    signal?: AbortSignal,
  ) =>
    described<Flow>(
      call('put', '/api/v1/flows/{flow_id}', {
        path: flowPath(id),
        body: { ...patch, definition: patch.definition ? { ...patch.definition } : undefined },
        signal,
      }),
    ),
  remove: (id: string) => call('delete', '/api/v1/flows/{flow_id}', { path: flowPath(id) }),
  duplicate: (id: string, name?: string) =>
    described<Flow>(call('post', '/api/v1/flows/{flow_id}/duplicate', { path: flowPath(id), ...optionalJson(name ? { name } : {}) })),
  exportJson: (id: string) => call('get', '/api/v1/flows/{flow_id}/export', { path: flowPath(id) }),
  importJson: (data: FlowExport) => described<Flow>(call('post', '/api/v1/flows/import', { body: data })),
  versions: (id: string) => described<FlowVersion[]>(call('get', '/api/v1/flows/{flow_id}/versions', { path: flowPath(id) })),
  version: (id: string, version: number, signal?: AbortSignal) =>
    call('get', '/api/v1/flows/{flow_id}/versions/{version}', { path: { flow_id: id, version }, signal }),
  restore: (id: string, version: number) =>
    described<Flow>(call('post', '/api/v1/flows/{flow_id}/versions/{version}/restore', { path: { flow_id: id, version } })),
  publish: (id: string, version: number) =>
    described<Flow>(call('post', '/api/v1/flows/{flow_id}/publish', { path: flowPath(id), ...optionalJson({ version }) })),
  unpublish: (id: string) => described<Flow>(call('post', '/api/v1/flows/{flow_id}/unpublish', { path: flowPath(id) })),
};

export const nodes = { catalogue: () => described<NodeSpec[]>(call('get', '/api/v1/nodes')) };

export const secrets = { list: () => call('get', '/api/v1/secrets') };

export const apiKeys = {
  list: () => call('get', '/api/v1/api-keys'),
  create: (name: string) => call('post', '/api/v1/api-keys', { body: { name, scope: 'full' } }),
  revoke: (id: string) => call('delete', '/api/v1/api-keys/{key_id}', { path: { key_id: id } }),
};

export interface RunFilter {
  flow_id?: string;
  status?: string;
  limit?: number;
  cursor?: string | null;
}

const runPath = (id: string) => ({ run_id: id });

export const runs = {
  /** `version` pins the run (the designer runs what it shows, not the published version). */
  start: (flowId: string, inputs: Record<string, unknown>, version?: number) =>
    call('post', '/api/v1/flows/{flow_id}/runs', {
      path: flowPath(flowId),
      ...optionalJson(version ? { inputs, version } : { inputs }),
    }),
  list: (f: RunFilter, signal?: AbortSignal) =>
    described<RunPage>(
      call('get', '/api/v1/runs', {
        query: { flow_id: f.flow_id, status: f.status, limit: f.limit ?? 50, cursor: f.cursor ?? undefined },
        signal,
      }),
    ),
  get: (id: string, signal?: AbortSignal) => described<RunWithSteps>(call('get', '/api/v1/runs/{run_id}', { path: runPath(id), signal })),
  cancel: (id: string) => call('post', '/api/v1/runs/{run_id}/cancel', { path: runPath(id) }),
  resume: (id: string) => call('post', '/api/v1/runs/{run_id}/resume', { path: runPath(id) }),
  fork: (id: string, fromNodeId: string, inputs?: Record<string, unknown>) =>
    call('post', '/api/v1/runs/{run_id}/fork', {
      path: runPath(id),
      body: inputs ? { from_node_id: fromNodeId, inputs } : { from_node_id: fromNodeId },
    }),
  /** Answers one waiting step: `itemIndex` picks the map item (any item, not only 0). */
  signal: (id: string, nodeId: string, payload: unknown, itemIndex = 0) =>
    call('post', '/api/v1/runs/{run_id}/signal', { path: runPath(id), body: { node_id: nodeId, payload, item_index: itemIndex } }),
};

export const batches = {
  /** Uploads a JSONL or CSV file (or a JSON list) as the raw body, typed by its content type. */
  create: (flowId: string, file: Blob, contentType: string, version?: number) =>
    call('post', '/api/v1/flows/{flow_id}/batches', {
      path: flowPath(flowId),
      query: version ? { version } : undefined,
      raw: file,
      headers: { 'content-type': contentType },
    }),
  get: (id: string) => call('get', '/api/v1/batches/{batch_id}', { path: { batch_id: id } }),
  results: async (id: string) => (await rawRequest(fillPath('/api/v1/batches/{batch_id}/results', { batch_id: id }))).text(),
};

export const ops = {
  stats: (minutes = 60, bucketSeconds = 60) => call('get', '/api/v1/ops/stats', { query: { minutes, bucket_seconds: bucketSeconds } }),
};

// Admin-only; not in the generated spec yet, so sent through request() with the types.ts shapes.
const providerPath = (id: string) => fillPath('/api/v1/providers/{provider_id}', { provider_id: id });
export const providers = {
  list: (signal?: AbortSignal) => request<Provider[]>('/api/v1/providers', { signal }),
  get: (id: string, signal?: AbortSignal) => request<Provider>(providerPath(id), { signal }),
  create: (body: ProviderCreate) => request<Provider>('/api/v1/providers', { method: 'POST', body }),
  update: (id: string, patch: ProviderPatch) => request<Provider>(providerPath(id), { method: 'PATCH', body: patch }),
  remove: (id: string) => request<void>(providerPath(id), { method: 'DELETE' }),
};
