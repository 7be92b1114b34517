// The app's notice region: polite live region for info/success, an assertive one for errors
// (role="alert"), each notice dismissable and optionally carrying one action (e.g. Retry).
// Mounted once in App.tsx; fed by stores/notices.ts.
import { useNotices, type Notice } from '../stores/notices';

function Item({ n }: { n: Notice }) {
  const dismiss = useNotices((s) => s.dismiss);
  return (
    <div className={`toast ${n.kind}`} data-testid={`toast-${n.kind}`}>
      <span>{n.text}</span>
      {n.action && (
        <button
          className="btn sm"
          onClick={() => {
            dismiss(n.id);
            n.action?.run();
          }}
        >
          {n.action.label}
        </button>
      )}
      <button className="btn sm ghost" aria-label="Dismiss notice" onClick={() => dismiss(n.id)}>
        ×
      </button>
    </div>
  );
}

export function Notices() {
  const items = useNotices((s) => s.items);
  return (
    <div className="toasts">
      <div role="status" aria-live="polite" aria-atomic="false">
        {items.filter((n) => n.kind !== 'error').map((n) => (
          <Item key={n.id} n={n} />
        ))}
      </div>
      <div role="alert" aria-live="assertive" aria-atomic="false">
        {items.filter((n) => n.kind === 'error').map((n) => (
          <Item key={n.id} n={n} />
        ))}
      </div>
    </div>
  );
}
