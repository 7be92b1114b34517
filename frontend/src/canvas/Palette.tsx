// The node palette: the catalogue grouped by category with a search box. Items are draggable
// onto the canvas (dataTransfer 'application/flowstudio-node' = node type; FlowCanvas's onDrop
// adds it) or added at the viewport centre with a click / Enter (`onAdd`). A type the server
// cannot run here (catalogue `available: false`) is shown disabled with the reason.
import { useMemo, useState } from 'react';
import type { NodeSpec } from '../api/types';
import { useCatalogue } from '../stores/catalogue';
import { categoryStyle } from './nodeVisuals';

export const DND_TYPE = 'application/flowstudio-node';

export function Palette({ onAdd, disabled }: { onAdd: (type: string) => void; disabled?: boolean }) {
  const specs = useCatalogue((s) => s.specs);
  const [query, setQuery] = useState('');
  const groups = useMemo(() => {
    const q = query.trim().toLowerCase();
    const out = new Map<string, NodeSpec[]>();
    for (const s of specs) {
      const hay = `${s.type} ${s.title} ${s.description} ${s.category}`.toLowerCase();
      if (q && !hay.includes(q)) continue;
      out.set(s.category, [...(out.get(s.category) ?? []), s]);
    }
    return [...out.entries()];
  }, [specs, query]);

  return (
    <aside className="palette" aria-label="Node palette">
      <div className="palette-head">
        <input
          className="search"
          placeholder="Search nodes…"
          value={query}
          onChange={(e) => setQuery(e.target.value)}
          aria-label="Search nodes"
        />
      </div>
      <div className="palette-list">
        {groups.length === 0 && <div className="empty small">No node matches.</div>}
        {groups.map(([category, items]) => {
          const style = categoryStyle(category);
          return (
            <section key={category} className="palette-group">
              <h4>
                <span className="dot" style={{ background: style.color }} />
                {style.label}
              </h4>
              {items.map((s) => {
                const off = disabled || s.available === false;
                return (
                  <div
                    key={s.type}
                    className={`palette-item${off ? ' disabled' : ''}`}
                    draggable={!off}
                    tabIndex={0}
                    role="button"
                    data-node-type={s.type}
                    style={{ '--accent': style.color } as React.CSSProperties}
                    onDragStart={(e) => {
                      e.dataTransfer.setData(DND_TYPE, s.type);
                      e.dataTransfer.effectAllowed = 'move';
                    }}
                    onDoubleClick={() => !off && onAdd(s.type)}
                    onKeyDown={(e) => e.key === 'Enter' && !off && onAdd(s.type)}
                    title={
                      s.available === false
                        ? `Unavailable: ${s.unavailable_reason ?? ''}`
                        : `${s.description}\nDrag onto the canvas (or double-click).`
                    }
                  >
                    <span className="palette-glyph">{style.glyph}</span>
                    <span className="palette-text">
                      <strong>{s.title}</strong>
                      <small>
                        {s.available === false
                          ? `Unavailable: ${s.unavailable_reason ?? ''}`
                          : s.description}
                      </small>
                    </span>
                  </div>
                );
              })}
            </section>
          );
        })}
      </div>
    </aside>
  );
}
