// `fire(promise, prefix?)`: start a promise from an event handler or effect without awaiting it,
// and never leave it unhandled: a failure becomes a notice (stores/notices.ts, via the one
// describeError); an abort is silent. ESLint's no-floating-promises (no `void` escape) sends
// every fire-and-forget call through here.
import { notifyError } from '../stores/notices';

export function fire(p: Promise<unknown>, prefix?: string): void {
  p.catch((err: unknown) => notifyError(err, prefix));
}
