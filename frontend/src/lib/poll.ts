// `startPoll(tick, {intervalMs})`: polls while the page is visible, never two ticks at once.
// - The next tick is scheduled intervalMs after the previous one ENDS (a slow answer delays the
//   next request instead of stacking requests behind it).
// - While the document is hidden no tick starts; when it becomes visible again a tick runs at once.
// - Each tick gets its own AbortSignal: `refresh()` (after a mutation) aborts a tick in flight, whose
//   answer may predate the mutation, and starts a fresh one; `stop()` aborts it for good. A tick
//   must apply its answer only while its signal is not aborted.
// - A tick that resolves 'stop' ends the polling (a 403/404 that retrying cannot fix).
// Used by ProvidersPage; errors are the tick's to report (a rejected tick still schedules the next).

export type Tick = (signal: AbortSignal) => Promise<'stop' | void>;

export interface Poller {
  /** Abort any tick in flight and run a fresh one now (if visible). */
  refresh: () => void;
  /** Stop for good: abort the tick in flight, clear the timer, stop listening. */
  stop: () => void;
}

export function startPoll(tick: Tick, { intervalMs, doc = document }: { intervalMs: number; doc?: Document }): Poller {
  let timer: ReturnType<typeof setTimeout> | null = null;
  let inFlight: AbortController | null = null;
  let stopped = false;

  const clearTimer = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
  const schedule = () => {
    clearTimer();
    if (!stopped && !doc.hidden) timer = setTimeout(run, intervalMs);
  };
  function run() {
    clearTimer();
    inFlight?.abort(); // its answer may be stale (refresh after a mutation): never applied
    inFlight = null;
    if (stopped || doc.hidden) return;
    const mine = new AbortController();
    inFlight = mine;
    const done = (verdict: 'stop' | void) => {
      if (inFlight !== mine) return; // superseded by refresh() or stop(): the newer one schedules
      inFlight = null;
      if (verdict === 'stop') stop();
      else schedule();
    };
    tick(mine.signal).then(done, () => done());
  }
  const onVisibility = () => {
    if (doc.hidden) clearTimer(); // a tick in flight may finish; it schedules nothing while hidden
    else if (!inFlight && timer === null) run();
  };
  function stop() {
    stopped = true;
    clearTimer();
    inFlight?.abort();
    inFlight = null;
    doc.removeEventListener('visibilitychange', onVisibility);
  }

  doc.addEventListener('visibilitychange', onVisibility);
  run();
  return { refresh: run, stop };
}
