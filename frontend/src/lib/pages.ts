// Keeping "Load more" pages through an auto-refresh (RunsPage): the refresh re-reads the head of
// the list with as many rows as are shown (up to the API's 500), and `mergeRefresh` puts fresh
// rows first and keeps any rows the user loaded beyond what the refresh covered (including rows
// a concurrent "Load more" appended while the refresh was in flight), without duplicates.

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export const REFRESH_MAX = 500;

export function refreshLimit(shown: number, pageSize = 50): number {
  return Math.min(REFRESH_MAX, Math.max(pageSize, shown));
}

/** New list and cursor after a head refresh of `limit` rows answered `page`. */
export function mergeRefresh<T extends { id: string }>(
  prev: T[] | null,
  prevCursor: string | null,
  page: Page<T>,
  limit: number,
): { items: T[]; cursor: string | null } {
  const tail = (prev ?? []).slice(limit);
  if (!tail.length) return { items: page.items, cursor: page.next_cursor };
  const fresh = new Set(page.items.map((r) => r.id));
  return { items: [...page.items, ...tail.filter((r) => !fresh.has(r.id))], cursor: prevCursor };
}
