"""Call permits of a provider, cluster-wide, tied to the calling step's lease.

`nodes/llm.py` wraps each chat call in `async with provider_call(ctx, base_url, api_key, tokens)`:
1. the provider is looked up (cached per process) or registered on its first call
   (`store.providers.ensure_provider`: no limits, adaptive from 429s alone);
2. a permit is asked of PostgreSQL (`provider_acquire_many`: concurrency within the effective limit, RPM
   and TPM within the last minute) for (step id, attempt): it counts only while the step holds that
   lease, so a dead worker's permits return when its lease ends, by expiry or by fast takeover;
3. refused, the step waits in-process for at most PROVIDER_PERMIT_WAIT_SECONDS, in one FIFO per
   provider (`Gate`: while steps are lined up, only the head asks the database, on each local
   release or every POLL_SECONDS, and it asks for the first LINE_BATCH steps of the line at once:
   `provider_acquire_many`, one round trip however many permits a burst of releases freed; with
   nobody in line and no ask in flight, a caller asks at once; a step asking again, woken from a
   park or retried, lines up ahead of the first attempts: it was waiting before them), then
   raises `ParkStep`: the worker commits the step as `waiting` (`engine/parking.py`), holding no
   slot and no lease, until the orchestrator wakes it;
4. the body runs the call; `ProviderThrottled` (a 429, raised by `llm_client` instead of retrying)
   releases the permit as throttled (AIMD decrease) and parks the step for the Retry-After;
5. the permit is released (shielded) with the outcome and the response's real token usage; with
   steps lined up, the same statement asks permits for the head of the line
   (`store.release_then_ask`): the freed permit goes to the next step in one round trip;
6. in slow start (the provider's last answer said so), a call still unanswered
   PROVIDER_ACCEPT_AFTER_SECONDS after it went out was admitted by the provider (a refusal comes at
   once): the Gate reports it with its next ask (`Gate.admit`, migration 0035), which raises the
   provider's concurrency by one and earns 2 grants, as its release would have, a call length
   sooner; its release then says 'done' (counted once);
7. an ask forbids grants past the provider's known cap (probes) when a refused probe would outlast
   the steps lined up behind it (`Gate.may_probe`, migration 0035): the end of a batch.
With PROVIDER_LIMITS=off, `provider_call` yields None and nothing of this happens.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio

from flowstudio.providers.identity import key_fingerprint, normalise_base_url
from flowstudio.store import providers as store

log = logging.getLogger(__name__)
POLL_SECONDS = 0.2
LINE_BATCH = 64  # waiting steps the head of a line asks permits for in one round trip
DEFAULT_RETRY_AFTER = 1.0  # a 429 without Retry-After parks the step this long
MAX_RETRY_AFTER = 3600.0
DEFAULT_COMPLETION_TOKENS = 512  # the estimate when a call sets no max_tokens


@dataclass(frozen=True)
class Park:
    """Park the step (`waiting`, no lease) until its provider has capacity and `seconds` passed.
    Not a failed attempt: the wake gives the attempt back."""

    provider_id: str
    seconds: float
    reason: str  # concurrency | rpm | tpm | throttled


class ParkStep(Exception):
    def __init__(self, park: Park) -> None:
        super().__init__(f"parked: {park.reason}")
        self.park = park


class ProviderThrottled(Exception):
    """The provider answered 429: the call is not retried inside the step."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("provider answered 429")
        self.retry_after = retry_after


@dataclass(eq=False)
class Call:
    provider_id: str
    tokens: int | None = None  # the response's real usage, when known
    ended: bool = False
    reported: bool = False  # reported admitted in an ask (its slow-start +1 is counted)

    def used(self, tokens: int) -> None:
        self.tokens = tokens


def estimate_tokens(messages: list[dict[str, Any]], max_tokens: int | None) -> int:
    chars = sum(len(str(m.get("content") or "")) for m in messages)
    return chars // 4 + (max_tokens or DEFAULT_COMPLETION_TOKENS)


def limits_on(settings: Any) -> bool:
    return bool(getattr(settings, "provider_limits", False))


@dataclass(eq=False)
class Waiter:
    """One step in a Gate's line; `verdict` is set by whoever asked the database for it."""

    step_id: int
    attempt: int
    tokens: int
    verdict: str | None = None
    # a step asking again (woken from a park, or a retry) waited before every first attempt in
    # line: it lines up ahead of them, behind other such steps (first come, first served overall)
    again: bool = False
    # made head by an ask that refused it: it waits a poll (or a release) before asking again
    poll_first: bool = False
    wake: anyio.Event = field(default_factory=anyio.Event)  # decided, or now at the head


# ask(line, releases, admitted): verdicts for the line; `releases` is how many permit releases the
# ask answers for (0: none, an arrival or a poll), `admitted` how many calls it reports admitted by
# the provider: slow start grants 2 for each (`provider_acquire_many`)
Ask = Callable[[list[Waiter], int, int], Awaitable[list[str]]]
DECIDED = ("ok", "gone")


class Gate:
    """This process's FIFO of steps waiting for a permit of one provider. Only the head of the
    line is woken by a release (`notify`); the others sleep until they are decided or become the
    head (no thundering herd of hundreds of waiting steps on every release). One ask for the line
    is in flight at a time (first come, first served); a release asks for it in its own statement
    when none is, and is owed by the next ask when one is: that ask answers for every release
    owed (in slow start, 2 grants for each, in one round trip)."""

    def __init__(self) -> None:
        self.queue: deque[Waiter] = deque()
        self.asking = 0  # asks for the line in flight (the head's, or a release's)
        # releases made while an ask was in flight: the next ask for the line answers for them all
        # (the head asks at once when any are owed; a burst of releases in slow start earns its
        # grants in one round trip)
        self.owed = 0
        # calls the provider admitted (unanswered PROVIDER_ACCEPT_AFTER_SECONDS after they went
        # out) that no ask has reported yet: the next ask reports them all (`admit`)
        self.admitted: list[Call] = []
        self.slow_start = True  # as the provider's last answer said (unknown: assume it is)
        # what `may_probe` weighs: this process's calls holding a permit now, a successful call's
        # duration (moving average) and the last 429's Retry-After
        self.calls_out = 0
        self.call_seconds: float | None = None
        self.retry_after = DEFAULT_RETRY_AFTER

    def may_probe(self) -> bool:
        """Past the provider's known cap a grant probes for a raised limit; refused (the same
        cap), its step waits out the Retry-After and calls again: at the end of a batch, the
        batch waits for it. Worth it only while the steps lined up here outlast that refusal:
        they drain in about len(queue) / calls_out call lengths, after the calls now out."""
        if self.call_seconds is None:
            return True
        left = (len(self.queue) / max(1, self.calls_out) + 1) * self.call_seconds
        return left > self.retry_after + self.call_seconds

    def call_ended(self, seconds: float | None, retry_after: float | None) -> None:
        """A call ended: its duration if it succeeded, the Retry-After if it was refused."""
        self.calls_out -= 1
        if seconds is not None:
            last = self.call_seconds
            self.call_seconds = seconds if last is None else 0.8 * last + 0.2 * seconds
        if retry_after is not None:
            self.retry_after = retry_after

    def admit(self, call: Call) -> None:
        """`call` is still out: the provider admitted it. Reported by the next ask for the line,
        now if steps wait and none is in flight; with nobody in line, a line's first ask or its
        release reports it (with no step waiting, more concurrency is of no use yet)."""
        if call.ended or not self.slow_start:
            return
        self.admitted.append(call)
        if not self.asking:
            self.notify()

    def learn(self, slow_start: bool | None) -> None:
        if slow_start is not None:
            self.slow_start = slow_start
            if not slow_start:
                self.admitted.clear()

    def settle(self, call: Call) -> bool:
        """The call ended: True if an ask reported it admitted (its release says 'done')."""
        call.ended = True
        if call in self.admitted:
            self.admitted.remove(call)
        return call.reported

    def notify(self) -> None:
        """Capacity may have returned: the head asks again."""
        if self.queue:
            self.queue[0].wake.set()

    def _leave(self, waiter: Waiter, handover: bool = True) -> None:
        if waiter in self.queue:
            was_head = self.queue[0] is waiter
            self.queue.remove(waiter)
            if was_head and handover:
                self.notify()

    def _line(self) -> list[Waiter]:
        return [w for _, w in zip(range(LINE_BATCH), self.queue, strict=False)]

    async def _ask(self, ask: Ask, line: list[Waiter], releases: int) -> list[str]:
        """Ask for `line` (shielded: permits the database granted are never lost to a timeout);
        every waiter granted is decided, woken, and leaves the line."""
        self.asking += 1
        admitted, self.admitted = self.admitted, []
        for call in admitted:
            call.reported = True  # before the statement: its release must not count it again
        try:
            with anyio.CancelScope(shield=True):
                verdicts = await ask(line, releases, len(admitted))
        except BaseException:  # not reported after all: the next ask reports the calls still out
            back = [call for call in admitted if not call.ended]
            for call in back:
                call.reported = False
            self.admitted[:0] = back
            raise
        finally:
            self.asking -= 1
        for waiter, verdict in zip(line, verdicts, strict=True):
            if verdict in DECIDED and waiter.verdict is None:
                waiter.verdict = verdict
                waiter.wake.set()
                self._leave(waiter, handover=False)
        if self.queue:  # the head, new or not, runs its poll; it asks at once if all got in, or
            head = self.queue[0]  # if it is owed an ask
            head.poll_first = not all(v in DECIDED for v in verdicts)
            head.wake.set()
        return verdicts

    async def acquire(self, me: Waiter, ask: Ask, wait_s: float) -> str:
        """The first verdict 'ok' or 'gone', else the last refusal once `wait_s` has passed.
        Nobody in line and no ask in flight: ask at once; after a refusal, behind others, or
        behind an ask in flight, line up: the head asks for the first LINE_BATCH of the line at
        once (a batch's first LLM steps arrive together: one or two statements admit them, not
        one each, queued for the provider row's lock)."""
        if not self.queue and not self.asking:
            verdict = (await self._ask(ask, [me], 0))[0]
            if verdict in DECIDED or wait_s <= 0:
                return verdict
        if me.again:  # ahead of every first attempt, behind the steps asking again before it
            ahead = next((i for i, w in enumerate(self.queue) if not w.again), len(self.queue))
            self.queue.insert(ahead, me)
        else:
            self.queue.append(me)
        verdict = "concurrency"
        try:
            with anyio.move_on_after(wait_s) as scope:
                while me.verdict is None:
                    me.wake = anyio.Event()  # before looking: a wake-up from here on is kept
                    if self.queue[0] is not me:
                        await me.wake.wait()
                        continue
                    if self.asking:  # an ask for the line is in flight (maybe a release's)
                        pass
                    elif me.poll_first and not (self.owed or self.admitted):  # refused: poll
                        me.poll_first = False
                    else:  # this ask answers for every release owed
                        releases, self.owed = self.owed, 0
                        verdict = (await self._ask(ask, self._line(), releases))[0]
                    if me.verdict is None:
                        with anyio.move_on_after(POLL_SECONDS):
                            await me.wake.wait()
            last_look = me.verdict is None and self.queue[0] is me
            if scope.cancelled_caught and last_look:  # a wait of 0 s tries once
                verdict = (await self._ask(ask, [me], 0))[0]
        finally:
            self._leave(me)
        return me.verdict or verdict

    async def release(self, release: Ask) -> None:
        """Free a permit through `release(line, releases)`, which also asks for `line` (the head
        of the line; empty when nobody waits or an ask for it is in flight) in the same round
        trip, answering for this release and those owed: the line gets the freed permits without
        a second round trip nor a wake-up first. As after any ask for the line, the head asks
        again at once only if the whole line asked for was admitted (there may be room for more),
        or if releases are owed; after a refusal, at the next release or poll."""
        in_flight = bool(self.asking)
        line = [] if in_flight else self._line()
        if not line:
            await release([], 0, 0)
            self.owed += in_flight  # an ask was in flight: the next ask answers for this release
            self.notify()
            return
        releases, self.owed = self.owed + 1, 0
        await self._ask(release, line, releases)


def _line(line: list[Waiter]) -> store.Line:
    return [(w.step_id, w.attempt, w.tokens) for w in line]


_ids: dict[tuple[str, str], str] = {}
_registering: dict[tuple[str, str], anyio.Lock] = {}
_gates: dict[str, Gate] = {}


async def _provider_id(pool: Any, settings: Any, url: str, fingerprint: str) -> str:
    """The provider's id, looked up (or registered) once per process: the first LLM steps of a
    batch arrive together, and each asked the database before (a pool checkout each)."""
    key = (url, fingerprint)
    if key in _ids:
        return _ids[key]
    async with _registering.setdefault(key, anyio.Lock()):
        if key not in _ids:
            async with pool.connection() as conn:
                _ids[key] = await store.ensure_provider(
                    conn,
                    url,
                    fingerprint,
                    settings.provider_default_max_concurrency,
                    settings.provider_initial_concurrency,
                )
    return _ids[key]


@asynccontextmanager
async def provider_call(
    ctx: Any, base_url: str | None, api_key: str, tokens: int
) -> AsyncIterator[Call | None]:
    """A permit for one call of the step `ctx` (a `NodeContext`); see the module comment."""
    settings, pool = ctx.settings, ctx.db
    if not limits_on(settings) or pool is None:
        yield None
        return
    url = normalise_base_url(base_url)
    fingerprint = key_fingerprint(settings.secret_key, api_key)
    provider_id = await _provider_id(pool, settings, url, fingerprint)

    gate = _gates.setdefault(provider_id, Gate())

    async def ask(line: list[Waiter], releases: int = 0, admitted: int = 0) -> list[str]:
        async with pool.connection() as conn:
            answer = await store.ask(
                conn, provider_id, _line(line), releases, admitted, gate.may_probe()
            )
        gate.learn(answer.slow_start)
        return answer.verdicts

    me = Waiter(ctx.step_id, ctx.attempt, tokens, again=ctx.attempt > 1)
    verdict = await gate.acquire(me, ask, settings.provider_permit_wait_seconds)
    if verdict == "gone":  # an admin deleted the provider: register it again
        _ids.pop((url, fingerprint), None)
        provider_id = await _provider_id(pool, settings, url, fingerprint)
        gate = _gates.setdefault(provider_id, Gate())
        verdict = (await ask([Waiter(ctx.step_id, ctx.attempt, tokens)]))[0]
    if verdict != "ok":
        raise ParkStep(Park(provider_id, 0.0, verdict))
    call, outcome = Call(provider_id), "error"
    accept_after = settings.provider_accept_after_seconds
    loop = asyncio.get_running_loop()
    timer = (
        loop.call_later(accept_after, gate.admit, call)
        if gate.slow_start and accept_after > 0
        else None
    )
    gate.calls_out += 1
    started, took, refused = loop.time(), None, None
    try:
        yield call
        outcome, took = "ok", loop.time() - started
    except ProviderThrottled as exc:
        outcome = "throttled"
        wait = DEFAULT_RETRY_AFTER if exc.retry_after is None else exc.retry_after
        refused = min(MAX_RETRY_AFTER, wait)
        raise ParkStep(Park(provider_id, refused, "throttled")) from exc
    finally:
        gate.call_ended(took, refused)
        if timer is not None:
            timer.cancel()
        if gate.settle(call):  # reported admitted: its slow-start +1 is counted (0035)
            outcome = {"ok": "done", "error": "failed"}.get(outcome, outcome)

        async def release(line: list[Waiter], releases: int, admitted: int) -> list[str]:
            async with pool.connection() as conn:
                answer = await store.release_then_ask(
                    conn,
                    (ctx.step_id, ctx.attempt, outcome, call.tokens),
                    provider_id,
                    _line(line),
                    releases,
                    admitted,
                    gate.may_probe(),
                )
            gate.learn(answer.slow_start)
            return answer.verdicts

        with anyio.CancelScope(shield=True):
            try:
                await gate.release(release)
            except Exception as exc:  # the permit lapses with the step's lease anyway
                log.warning("could not release a permit of provider %s: %s", provider_id, exc)
                gate.notify()
