// Calls typed from the OpenAPI spec (generated/openapi.d.ts, `npm run gen:api`): `call(method,
// path, {path, query, body, headers, signal})` takes a path template exactly as the spec names
// it ('/api/v1/flows/{flow_id}'), checks the path/query parameters and the JSON body against the
// operation, fills the template and returns the operation's success type (the API types every
// answer; endpoints.ts narrows only the free-form flow definition and params schema).
import type { paths } from '../../generated/openapi';
import { request } from './http';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
type Json<T> = T extends { content: { 'application/json': infer B } } ? B : never;

/** Methods the spec defines for path P. */
export type MethodOf<P extends keyof paths> = {
  [M in Method]: [NonNullable<paths[P][M]>] extends [never] ? never : M;
}[Method];

export type Op<P extends keyof paths, M extends MethodOf<P>> = NonNullable<paths[P][M]>;
export type BodyOf<O> = O extends { requestBody: infer R } ? Json<NonNullable<R>> : O extends { requestBody?: infer R } ? Json<NonNullable<R>> : never;
type Param<O, K extends string> = O extends { parameters: { [k in K]?: infer X } } ? X : never;
export type SuccessOf<O> = O extends { responses: infer R }
  ? R extends { 200: infer A }
    ? Json<A>
    : R extends { 201: infer A }
      ? Json<A>
      : R extends { 202: infer A }
        ? Json<A>
        : void
  : never;

export interface CallInit<O> {
  path?: Param<O, 'path'>;
  query?: Param<O, 'query'>;
  body?: BodyOf<O>;
  raw?: BodyInit;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

/** The URL of a spec path with its parameters filled in and the query appended. */
export function fillPath(template: string, path?: object, query?: object): string {
  const params = (path ?? {}) as Record<string, unknown>;
  const url = template.replace(/\{(\w+)\}/g, (_, name: string) => {
    if (params[name] === undefined || params[name] === null) throw new Error(`missing path parameter ${name} for ${template}`);
    return encodeURIComponent(String(params[name]));
  });
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const qs = q.toString();
  return qs ? `${url}?${qs}` : url;
}

export function call<P extends keyof paths, M extends MethodOf<P>>(method: M, path: P, init: CallInit<Op<P, M>> = {}): Promise<SuccessOf<Op<P, M>>> {
  return request<SuccessOf<Op<P, M>>>(fillPath(path as string, init.path as object | undefined, init.query as object | undefined), {
    method: method.toUpperCase(),
    body: init.body,
    raw: init.raw,
    headers: init.headers,
    signal: init.signal,
  });
}
