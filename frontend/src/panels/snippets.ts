// Code snippets for calling a flow from outside (DeployPanel shows them with copy buttons):
// curl / Python / JavaScript for the chat endpoint (POST /api/v1/run/{flow_id} {"input_value"}) and
// the async run endpoint (POST /api/v1/flows/{id}/runs {"inputs"}), authenticated by x-api-key.
export type SnippetLang = 'curl' | 'python' | 'javascript';
export type SnippetKind = 'chat' | 'async';

export function endpointFor(base: string, flowId: string, kind: SnippetKind): string {
  return kind === 'chat' ? `${base}/api/v1/run/${flowId}` : `${base}/api/v1/flows/${flowId}/runs`;
}

export function snippet(lang: SnippetLang, kind: SnippetKind, base: string, flowId: string, key = 'YOUR_API_KEY'): string {
  const url = endpointFor(base, flowId, kind);
  const body = kind === 'chat' ? '{"input_value": "Hello!"}' : '{"inputs": {"input_value": "Hello!"}}';
  switch (lang) {
    case 'curl':
      return [
        `curl -X POST '${url}' \\`,
        `  -H 'x-api-key: ${key}' \\`,
        `  -H 'content-type: application/json' \\`,
        ...(kind === 'async' ? [`  -H 'Idempotency-Key: order-42' \\`] : []),
        `  -d '${body}'`,
      ].join('\n');
    case 'python':
      return [
        'import httpx',
        '',
        `r = httpx.post(`,
        `    "${url}",`,
        `    headers={"x-api-key": "${key}"},`,
        `    json=${body.replace(/"/g, '"')},`,
        `    timeout=120,`,
        ')',
        'r.raise_for_status()',
        kind === 'chat' ? 'print(r.json()["outputs"])' : 'print(r.json()["id"])  # poll GET /api/v1/runs/{id}',
      ].join('\n');
    case 'javascript':
      return [
        `const res = await fetch('${url}', {`,
        `  method: 'POST',`,
        `  headers: { 'x-api-key': '${key}', 'content-type': 'application/json' },`,
        `  body: JSON.stringify(${body.replace(/"(\w+)":/g, '$1:')}),`,
        '});',
        kind === 'chat' ? 'console.log((await res.json()).outputs);' : 'console.log((await res.json()).id);',
      ].join('\n');
  }
}
