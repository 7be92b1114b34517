// The replay scrubber: steps through the run's event log transition by transition (range slider,
// first/prev/next/last, play at 4 events/s) and lists the events with the current one
// highlighted. Moving it calls runView.seek(i), which recolours the canvas to that moment.
import { useEffect, useRef, useState } from 'react';
import { describeEvent, STATUS_COLORS } from '../stores/runState';
import { useRunView } from '../stores/runView';

export function Timeline() {
  const events = useRunView((s) => s.events);
  const cursor = useRunView((s) => s.cursor);
  const seek = useRunView((s) => s.seek);
  const [playing, setPlaying] = useState(false);
  const listRef = useRef<HTMLOListElement>(null);

  const isPlaying = playing && cursor < events.length - 1; // play stops by itself at the end
  useEffect(() => {
    if (!isPlaying) return;
    const t = setTimeout(() => seek(cursor + 1), 250);
    return () => clearTimeout(t);
  }, [isPlaying, cursor, seek]);

  useEffect(() => {
    listRef.current?.querySelector('.current')?.scrollIntoView({ block: 'nearest' });
  }, [cursor]);

  const current = events[cursor];
  const t0 = events[0] ? new Date(events[0].at).getTime() : 0;
  return (
    <div className="timeline" data-testid="timeline">
      <div className="timeline-controls">
        <button className="btn icon sm" onClick={() => seek(-1)} title="Before the first event" aria-label="first">
          |◀
        </button>
        <button className="btn icon sm" onClick={() => seek(cursor - 1)} title="Previous transition" aria-label="previous" data-testid="tl-prev">
          ‹
        </button>
        <button
          className="btn icon sm"
          onClick={() => {
            const next = !isPlaying;
            if (next && cursor >= events.length - 1) seek(-1);
            setPlaying(next);
          }}
          aria-label={isPlaying ? 'pause' : 'play'}
        >
          {isPlaying ? '❚❚' : '▶'}
        </button>
        <button className="btn icon sm" onClick={() => seek(cursor + 1)} title="Next transition" aria-label="next" data-testid="tl-next">
          ›
        </button>
        <button className="btn icon sm" onClick={() => seek(events.length - 1)} aria-label="last">
          ▶|
        </button>
        <input
          type="range"
          min={-1}
          max={Math.max(events.length - 1, 0)}
          value={cursor}
          onChange={(e) => seek(Number(e.target.value))}
          aria-label="timeline position"
          data-testid="tl-range"
        />
        <span className="tl-pos mono" data-testid="tl-pos">
          {cursor + 1}/{events.length}
        </span>
        <span className="tl-desc">
          {current ? (
            <>
              <span className="mono muted">+{((new Date(current.at).getTime() - t0) / 1000).toFixed(3)}s</span> {describeEvent(current)}
            </>
          ) : (
            <span className="muted">start — every node pending</span>
          )}
        </span>
      </div>
      <ol className="tl-list" ref={listRef}>
        {events.map((e, i) => (
          <li key={e.seq} className={i === cursor ? 'current' : i > cursor ? 'future' : ''} onClick={() => seek(i)}>
            <i style={{ background: STATUS_COLORS[e.to_status ?? ''] ?? '#94a3b8' }} />
            <span className="mono muted">#{e.seq}</span> {describeEvent(e)}
          </li>
        ))}
      </ol>
    </div>
  );
}
