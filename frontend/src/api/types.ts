// Wire types of the designer. Every API request and response body is an alias of the generated
// OpenAPI types (generated/openapi.d.ts; regenerate with `npm run gen:api` against a running API):
// the API types every answer (a msgspec Struct per response, tests/unit/test_openapi_types.py).
// Hand-written here, because the spec leaves them free-form on purpose: the flow definition's shape
// (FlowDefinition, DefNode, DefEdge, NodeData, Position, RetryPolicy: the canvas's JSON, DESIGN.md §4)
// and JsonSchema (a node's params_schema); `Flow`/`NodeSpec` narrow those two fields of the generated
// types. Nothing else here is a response type.
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
export type FlowVersion = S['FlowVersionSummary'];
export type PortSpec = S['PortOut'];
export type RunStatus = S['RunStatus'];
export type StepStatus = S['StepStatus'];
export type Run = S['RunOut'];
export type Step = S['StepOut'];
export type RunWithSteps = S['RunDetail'];
export type RunPage = S['RunPage'];
/** One row of the run's event log, as the SSE `data:` of `run`, `step`, `signal`, `map` events. */
export type RunEvent = S['RunEventOut'];
export type RunResult = S['RunResult'];
export type BatchStatus = S['BatchOut'];

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

/** A flow answer with its free-form `definition` read as the canvas's shape. */
export type WithDefinition<T extends { definition: unknown }> = Omit<T, 'definition'> & { definition: FlowDefinition };
export type Flow = WithDefinition<S['FlowOut']>;
export type FlowWithAccess = WithDefinition<S['FlowWithAccess']>;

/** A catalogue entry with its params' JSON Schema typed for the forms. */
export type NodeSpec = Omit<S['NodeTypeOut'], 'params_schema'> & { params_schema: JsonSchema };

// Providers (issue 12, admin-only /api/v1/providers), from the spec.
/** A provider (base_url + API key) with its limits and live usage across the cluster. */
export type Provider = S['ProviderOut'];
/** The limits of a provider: null = no limit. */
export type ProviderLimits = Pick<Provider, 'max_concurrency' | 'rpm' | 'tpm'>;
/** POST /api/v1/providers: `api_key_secret` names one of the caller's secrets. */
export type ProviderCreate = S['ProviderIn'];
/** PATCH /api/v1/providers/{id}: only the fields sent change; null clears a limit (or the label). */
export type ProviderPatch = S['ProviderPatch'];

/** A definition read from a free-form answer or a file: checked for its nodes and edges lists. */
export function asFlowDefinition(value: unknown): FlowDefinition {
  const v = value as { nodes?: unknown; edges?: unknown } | null;
  if (!v || typeof v !== 'object' || !Array.isArray(v.nodes) || !Array.isArray(v.edges)) {
    throw new Error('not a flow definition: expected {"nodes": [...], "edges": [...]}');
  }
  return { nodes: v.nodes as DefNode[], edges: v.edges as DefEdge[] };
}
