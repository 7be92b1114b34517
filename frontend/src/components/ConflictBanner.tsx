// Shown when a save answered 409 (the flow moved on since the version the canvas was loaded
// from, e.g. saved in another tab or by a teammate): the user chooses to reload the server's
// version (their unsaved edits are dropped) or to overwrite it with the canvas (a save based
// on the newer version). Neither happens without a click.
export interface Conflict {
  currentVersion: number | null;
  baseVersion: number;
}

export function ConflictBanner({ conflict, onReload, onOverwrite }: { conflict: Conflict; onReload: () => void; onOverwrite: () => void }) {
  return (
    <div className="banner warn" role="alert" data-testid="save-conflict">
      Not saved: this flow changed on the server since you opened v{conflict.baseVersion}
      {conflict.currentVersion ? ` (it is now v${conflict.currentVersion})` : ''}.
      <button className="btn sm" onClick={onReload} data-testid="conflict-reload">
        Reload theirs (drop my edits)
      </button>
      <button className="btn sm danger" onClick={onOverwrite} data-testid="conflict-overwrite">
        Overwrite with mine
      </button>
    </div>
  );
}
