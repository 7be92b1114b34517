"""Redirects under the egress guard: followed hop by hop, credentials never carried to another origin.

- `send_following(client, request, follow, max_redirects, private_headers)`: sends with httpx's own
  redirect handling off and follows `response.next_request` itself, at most `max_redirects` hops.
  Each hop is a new request through the guarded transport (resolved, checked, pinned again). When a
  hop leaves the origin (scheme, host, port; an http -> https upgrade of the same host counts as the
  same), the caller's `private_headers` (its custom headers and credentials) are dropped, as httpx
  already drops Authorization and Cookie. Returns the final response, streamed (caller reads/closes).
- `refuse_cross_origin_redirect(response)`: an httpx response hook for clients that let httpx follow
  redirects (the openai SDK's): a redirect to another origin raises `EgressRefused` instead of being
  followed with the SDK's API-key headers. Same-origin redirects are followed and checked per hop.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx

from flowstudio.egress.policy import EgressRefused


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    """Same scheme, host and port, or an http -> https upgrade of the same host (default ports)."""
    if a.host.lower() != b.host.lower():
        return False
    if (a.scheme, a.port) == (b.scheme, b.port):
        return True
    return (
        a.scheme == "http"
        and b.scheme == "https"
        and a.port in (None, 80)
        and b.port in (None, 443)
    )


async def send_following(
    client: httpx.AsyncClient,
    request: httpx.Request,
    *,
    follow: bool,
    max_redirects: int,
    private_headers: Iterable[str] = (),
) -> httpx.Response:
    private = [h for h in private_headers if h.lower() not in ("host", "idempotency-key")]
    hops = 0
    while True:
        response = await client.send(request, follow_redirects=False, stream=True)
        following = response.next_request if follow else None
        if following is None:
            return response
        await response.aclose()
        hops += 1
        if hops > max_redirects:
            raise httpx.TooManyRedirects(f"more than {max_redirects} redirects", request=following)
        if not same_origin(request.url, following.url):
            for name in private:
                following.headers.pop(name, None)
        request = following


async def refuse_cross_origin_redirect(response: httpx.Response) -> None:
    if not response.has_redirect_location:
        return
    target = response.request.url.join(response.headers["location"])
    if not same_origin(response.request.url, target):
        raise EgressRefused(
            f"egress refused: redirect from {response.request.url.host} to another origin "
            f"({target.host}) is not followed"
        )
