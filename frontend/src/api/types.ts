// Wire types of the designer. Typed request/response bodies come from the generated OpenAPI file
// (generated/openapi.d.ts, regenerate with `npm run gen:api`); responses the API declares as free-form dicts
// (flows, runs, steps, events, node catalogue) are described here once, matching DESIGN.md §3-§4.
import type { components } from '../../generated/openapi';

type S = components['schemas'];
export type User = S['MeOut'];
export type LoginBody = S['LoginBody'];
export type ApiKey = S['ApiKeyOut'];
export type ApiKeyCreated = S['ApiKeyCreated'];
export type Secret = S['SecretOut'];
export type OpsStats = S['OpsStats'];
export type ProcessInfo = S['ProcessInfo'];
export type FlowVersionOut = S['FlowVersionOut'];
export type RunCreated = S['RunCreated'];
export type ForkIn = S['ForkIn'];
export type SignalIn = S['SignalIn'];
export type FlowExport = S['FlowExport'];
export type FlowPatch = S['FlowPatch'];

export interface Position {
  x: number;
  y: number;
}

export interface RetryPolicy {
  max_attempts: number;
  initial_interval?: number;
  backoff?: number;
  max_interval?: number;
}

export interface NodeData {
  params: Record<string, unknown>;
  label?: string;
  retry?: RetryPolicy;
  timeout_s?: number;
  [key: string]: unknown;
}

export interface DefNode {
  id: string;
  type: string;
  position: Position;
  data: NodeData;
}

export interface DefEdge {
  id: string;
  source: string;
  sourceHandle: string | null;
  target: string;
  targetHandle: string | null;
}

export interface FlowDefinition {
  nodes: DefNode[];
  edges: DefEdge[];
}

export interface Flow {
  id: string;
  owner_id: string;
  name: string;
  description: string;
  definition: FlowDefinition;
  version: number;
  published_version?: number | null;
  endpoint_name?: string | null;
  created_at: string;
  updated_at: string;
}

export interface FlowVersion {
  version: number;
  created_at: string;
  created_by: string | null;
}

export interface PortSpec {
  name: string;
  type: string;
}

export interface JsonSchema {
  $ref?: string;
  $defs?: Record<string, JsonSchema>;
  type?: string | string[];
  title?: string;
  description?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  default?: unknown;
  enum?: unknown[];
  anyOf?: JsonSchema[];
  items?: JsonSchema;
  additionalProperties?: boolean | JsonSchema;
  minimum?: number;
  maximum?: number;
  format?: string;
}

export interface NodeSpec {
  type: string;
  title: string;
  category: string;
  description: string;
  params_schema: JsonSchema;
  inputs: PortSpec[];
  outputs: PortSpec[];
  cpu_bound?: boolean;
  // false where this installation cannot run the type (the code node without a sandbox, CODE_NODE=off)
  available?: boolean;
  unavailable_reason?: string | null;
}

export type RunStatus = 'queued' | 'running' | 'waiting' | 'succeeded' | 'failed' | 'cancelled';
export type StepStatus =
  | 'pending'
  | 'ready'
  | 'running'
  | 'retrying'
  | 'waiting'
  | 'succeeded'
  | 'failed'
  | 'skipped'
  | 'cancelled';

export interface Run {
  id: string;
  flow_id: string;
  flow_version: number;
  owner_id: string;
  status: RunStatus;
  inputs: Record<string, unknown>;
  outputs: unknown;
  error: unknown;
  parent_run_id: string | null;
  fork_of_node: string | null;
  batch_id: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  event_seq: number;
}

export interface Step {
  id: number;
  node_id: string;
  node_type: string;
  item_index: number;
  status: StepStatus;
  attempt: number;
  max_attempts: number;
  branch: string | null;
  error: unknown;
  input: unknown;
  output: unknown;
  created_at: string;
  ready_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  due_at: string | null;
}

export interface RunWithSteps extends Run {
  steps: Step[];
}

export interface RunPage {
  items: Run[];
  next_cursor: string | null;
}

/** One row of the run's event log, as the SSE `data:` of `run`, `step`, `signal`, `map` events. */
export interface RunEvent {
  seq: number;
  at: string;
  kind: string;
  step_id: number | null;
  node_id: string | null;
  item_index: number | null;
  attempt: number | null;
  from_status: string | null;
  to_status: string | null;
  data: unknown;
}

export interface RunResult {
  run_id: string;
  status: string;
  outputs: unknown;
  error: unknown;
}

export type BatchStatus = S['BatchOut'];

// Providers (issue 12, admin-only /api/v1/providers). Hand-written until the generated spec holds
// ProviderOut; then each becomes `S['ProviderOut']` etc. and endpoints.ts `providers` uses call().
/** A provider (base_url + API key) with its limits and live usage across the cluster. */
export interface Provider {
  id: string;
  base_url: string;
  key_fingerprint: string | null;
  label: string | null;
  max_concurrency: number | null;
  rpm: number | null;
  tpm: number | null;
  effective_concurrency: number;
  in_flight: number;
  parked: number;
  requests_last_minute: number;
  tokens_last_minute: number;
  throttled_total: number;
  last_throttled_at: string | null;
  created_at: string;
  updated_at: string;
}
/** The limits of a provider: null = no limit. */
export type ProviderLimits = Pick<Provider, 'max_concurrency' | 'rpm' | 'tpm'>;
/** POST /api/v1/providers: `api_key_secret` names one of the caller's secrets. */
export interface ProviderCreate extends Partial<ProviderLimits> {
  base_url: string;
  api_key_secret?: string;
  label?: string;
}
/** PATCH /api/v1/providers/{id}: only the fields sent change; null clears a limit (or the label). */
export type ProviderPatch = Partial<ProviderLimits & { label: string | null }>;

/** A definition read from a free-form answer or a file: checked for its nodes and edges lists. */
export function asFlowDefinition(value: unknown): FlowDefinition {
  const v = value as { nodes?: unknown; edges?: unknown } | null;
  if (!v || typeof v !== 'object' || !Array.isArray(v.nodes) || !Array.isArray(v.edges)) {
    throw new Error('not a flow definition: expected {"nodes": [...], "edges": [...]}');
  }
  return { nodes: v.nodes as DefNode[], edges: v.edges as DefEdge[] };
}
