// The visible state of the run follow (stores/runView.ts `connection`): live, reconnecting,
// failed (with the reason) or ended; an aria-live status so assistive tech hears the changes.
import { useRunView } from '../stores/runView';

const LABELS: Record<string, string> = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  failed: 'connection failed',
  ended: 'ended',
  stopped: 'stopped',
};

export function ConnectionBadge() {
  const connection = useRunView((s) => s.connection);
  const detail = useRunView((s) => s.connectionDetail);
  if (connection === 'idle') return null;
  return (
    <span className={`conn conn-${connection}`} role="status" aria-live="polite" data-testid="connection" data-state={connection} title={detail ?? ''}>
      <i aria-hidden /> {LABELS[connection] ?? connection}
      {connection === 'failed' && detail ? `: ${detail}` : ''}
    </span>
  );
}
