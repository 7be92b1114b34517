// startPoll: one tick at a time, the next one an interval after the previous ENDS, nothing while the
// tab is hidden (a tick at once when it shows again), refresh() drops a tick in flight, stop() ends.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startPoll, type Poller } from './poll';

class FakeDoc extends EventTarget {
  hidden = false;
  setHidden(hidden: boolean) {
    this.hidden = hidden;
    this.dispatchEvent(new Event('visibilitychange'));
  }
}

/** A tick whose answers the test releases one by one; records each call's signal. */
function scriptedTick() {
  const calls: { signal: AbortSignal; finish: (v?: 'stop') => void; fail: (e: Error) => void }[] = [];
  const tick = vi.fn(
    (signal: AbortSignal) =>
      new Promise<'stop' | void>((resolve, reject) => {
        calls.push({ signal, finish: resolve, fail: reject });
      }),
  );
  return { tick, calls };
}

const flush = () => vi.advanceTimersByTimeAsync(0);
let doc: FakeDoc;
let poller: Poller | null = null;

beforeEach(() => {
  vi.useFakeTimers();
  doc = new FakeDoc();
});
afterEach(() => {
  poller?.stop();
  poller = null;
  vi.useRealTimers();
});

describe('startPoll', () => {
  it('ticks at once, then an interval after each answer, never two at once', async () => {
    const { tick, calls } = scriptedTick();
    poller = startPoll(tick, { intervalMs: 1000, doc: doc as unknown as Document });
    expect(tick).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(10_000); // a slow answer: no request stacks up behind it
    expect(tick).toHaveBeenCalledTimes(1);
    calls[0].finish();
    await vi.advanceTimersByTimeAsync(999);
    expect(tick).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(tick).toHaveBeenCalledTimes(2);
  });

  it('keeps polling after a failed tick', async () => {
    const { tick, calls } = scriptedTick();
    poller = startPoll(tick, { intervalMs: 1000, doc: doc as unknown as Document });
    calls[0].fail(new Error('network'));
    await vi.advanceTimersByTimeAsync(1000);
    expect(tick).toHaveBeenCalledTimes(2);
  });

  it('starts nothing while hidden and ticks at once when visible again', async () => {
    const { tick, calls } = scriptedTick();
    doc.hidden = true;
    poller = startPoll(tick, { intervalMs: 1000, doc: doc as unknown as Document });
    await vi.advanceTimersByTimeAsync(5000);
    expect(tick).not.toHaveBeenCalled();
    doc.setHidden(false);
    expect(tick).toHaveBeenCalledTimes(1);
    // hidden while a tick is in flight: its answer schedules nothing
    doc.setHidden(true);
    calls[0].finish();
    await vi.advanceTimersByTimeAsync(5000);
    expect(tick).toHaveBeenCalledTimes(1);
    doc.setHidden(false);
    expect(tick).toHaveBeenCalledTimes(2);
  });

  it('a visibility change while a tick is in flight starts no second one', async () => {
    const { tick, calls } = scriptedTick();
    poller = startPoll(tick, { intervalMs: 1000, doc: doc as unknown as Document });
    doc.setHidden(true);
    doc.setHidden(false);
    expect(tick).toHaveBeenCalledTimes(1);
    calls[0].finish();
    await vi.advanceTimersByTimeAsync(1000);
    expect(tick).toHaveBeenCalledTimes(2);
  });

  it('refresh() aborts the tick in flight, whose late answer schedules nothing extra', async () => {
    const { tick, calls } = scriptedTick();
    poller = startPoll(tick, { intervalMs: 1000, doc: doc as unknown as Document });
    poller.refresh();
    expect(tick).toHaveBeenCalledTimes(2);
    expect(calls[0].signal.aborted).toBe(true);
    expect(calls[1].signal.aborted).toBe(false);
    calls[0].finish(); // the stale answer arrives late
    calls[1].finish();
    await flush();
    await vi.advanceTimersByTimeAsync(1000);
    expect(tick).toHaveBeenCalledTimes(3); // one timer, not two
    await vi.advanceTimersByTimeAsync(5000);
    expect(tick).toHaveBeenCalledTimes(3);
  });

  it('stop() aborts the tick in flight and ends polling; so does a tick answering stop', async () => {
    const a = scriptedTick();
    const p = startPoll(a.tick, { intervalMs: 1000, doc: doc as unknown as Document });
    p.stop();
    expect(a.calls[0].signal.aborted).toBe(true);
    a.calls[0].finish();
    doc.setHidden(true);
    doc.setHidden(false);
    await vi.advanceTimersByTimeAsync(5000);
    expect(a.tick).toHaveBeenCalledTimes(1);

    const b = scriptedTick();
    poller = startPoll(b.tick, { intervalMs: 1000, doc: doc as unknown as Document });
    b.calls[0].finish('stop');
    await vi.advanceTimersByTimeAsync(5000);
    expect(b.tick).toHaveBeenCalledTimes(1);
  });
});
