// The flow editor: palette | canvas | side panel (Node config, Run playground, Batch, Deploy,
// Versions). This page owns the side effects the canvas must not have: loading the flow and the
// catalogue, restoring a local draft (the API has no draft endpoint, so unsaved edits are kept in
// localStorage via stores/draft.ts), saving (PUT /api/v1/flows/{id} -> new version; a 422's
// errors are pinned on the offending nodes), previewing old versions and keyboard shortcuts.
// Race safety: every load has its own AbortController (a newer load or leaving the page aborts
// it, a stale answer is dropped); save refuses unless the graph on the canvas belongs to the flow
// in the URL, and sends the version the edits are based on (`base_version`): a 409 shows the
// ConflictBanner (reload theirs / overwrite). A failed flow or catalogue load offers Retry.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { useParams } from 'react-router-dom';
import { flows } from '../api/endpoints';
import { describeError, errorText } from '../api/errors';
import { ApiError } from '../api/http';
import { asFlowDefinition, type Flow, type FlowDefinition } from '../api/types';
import { ConflictBanner, type Conflict } from '../components/ConflictBanner';
import { FlowCanvas, type FlowInstance } from '../canvas/FlowCanvas';
import { Palette } from '../canvas/Palette';
import { Toolbar } from '../canvas/Toolbar';
import { useShortcuts } from '../canvas/useShortcuts';
import { BatchPanel } from '../panels/BatchPanel';
import { DeployPanel } from '../panels/DeployPanel';
import { NodeConfigPanel } from '../panels/NodeConfigPanel';
import { PlaygroundPanel } from '../panels/PlaygroundPanel';
import { defaultParams } from '../panels/schema';
import { VersionsPanel } from '../panels/VersionsPanel';
import { timeAgo } from '../lib/download';
import { useAuth } from '../stores/auth';
import { useCatalogue } from '../stores/catalogue';
import { clearDraft, loadDraft, saveDraft, type Draft } from '../stores/draft';
import { useGraph } from '../stores/graph';
import { errorsByNode } from '../stores/graphLogic';
import { takeFlow } from '../stores/prefetch';
import { notify, notifyError } from '../stores/notices';
import { useRunView } from '../stores/runView';
import { fire } from '../lib/fire';

type Tab = 'node' | 'run' | 'batch' | 'deploy' | 'versions';
const TABS: [Tab, string][] = [
  ['node', 'Node'],
  ['run', 'Playground'],
  ['batch', 'Batch'],
  ['deploy', 'Deploy'],
  ['versions', 'Versions'],
];

export function EditorPage() {
  const { flowId = '' } = useParams();
  const can = useAuth((s) => s.can);
  const canWrite = can('flows:write');
  const loadCatalogue = useCatalogue((s) => s.load);
  const catalogueReady = useCatalogue((s) => s.loaded);
  const catalogueError = useCatalogue((s) => s.error);
  const selectedId = useGraph((s) => {
    const sel = s.nodes.filter((n) => n.selected);
    return sel.length === 1 ? sel[0].id : sel.length > 1 ? `${sel.length} selected` : null;
  });
  const generalErrors = useGraph((s) => s.generalErrors);
  const readOnly = useGraph((s) => s.readOnly);
  const [flow, setFlow] = useState<Flow | null>(null);
  const [tab, setTab] = useState<Tab>('node');
  const [saving, setSaving] = useState(false);
  const [loadError, setLoadError] = useState<string | null>(null);
  const [staleDraft, setStaleDraft] = useState<Draft | null>(null);
  const [preview, setPreview] = useState<number | null>(null);
  const [conflict, setConflict] = useState<Conflict | null>(null);
  const rf = useRef<FlowInstance | null>(null);
  const loadAbort = useRef<AbortController | null>(null);
  const [shownFlowId, setShownFlowId] = useState(flowId);
  if (shownFlowId !== flowId) {
    // another flow in the URL: nothing of the old one may stay on screen (or be saved) meanwhile
    setShownFlowId(flowId);
    setFlow(null);
    setPreview(null);
    setConflict(null);
    setLoadError(null);
    setStaleDraft(null);
  }

  /** A fresh AbortController for the next load; the previous load's answer will be dropped. */
  const newLoad = useCallback(() => {
    loadAbort.current?.abort();
    loadAbort.current = new AbortController();
    return loadAbort.current.signal;
  }, []);

  const openFlow = useCallback(
    async (useDraft: boolean) => {
      const signal = newLoad();
      try {
        const f = await takeFlow(flowId, signal);
        if (signal.aborted || f.id !== flowId) return; // a newer load (another flow) owns the canvas
        setPreview(null);
        setConflict(null);
        setLoadError(null);
        setFlow(f);
        const draft = useDraft ? loadDraft(flowId) : null;
        const differs = draft && JSON.stringify(draft.definition) !== JSON.stringify(f.definition);
        if (draft && differs && draft.baseVersion === f.version) {
          useGraph.getState().load(draft.definition, { flowId, name: f.name, version: f.version, readOnly: !canWrite, dirty: true });
          setStaleDraft(null);
        } else {
          useGraph.getState().load(f.definition, { flowId, name: f.name, version: f.version, readOnly: !canWrite });
          setStaleDraft(draft && differs ? draft : null);
        }
        setTimeout(() => rf.current && fire(rf.current.fitView({ padding: 0.2, maxZoom: 1.2 })), 50);
      } catch (err) {
        if (!signal.aborted) setLoadError(describeError(err));
      }
    },
    [flowId, canWrite, newLoad],
  );

  useEffect(() => {
    fire(loadCatalogue());
    useRunView.getState().clear();
    // eslint-disable-next-line react-hooks/set-state-in-effect -- openFlow sets state only after its await
    fire(openFlow(true));
    return () => {
      loadAbort.current?.abort();
      useRunView.getState().clear();
    };
  }, [loadCatalogue, openFlow]);

  // Keep unsaved edits as a local draft (debounced), outside any canvas component.
  useEffect(() => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const unsub = useGraph.subscribe((s, prev) => {
      if (!s.dirty || s.readOnly || s.flowId !== flowId) return;
      if (s.nodes === prev.nodes && s.edges === prev.edges) return;
      clearTimeout(timer);
      timer = setTimeout(() => saveDraft(flowId, s.version, s.definition()), 600);
    });
    return () => {
      clearTimeout(timer);
      unsub();
    };
  }, [flowId]);

  /** Saves the canvas; `overwriteFrom` bases the save on that (newer) version after a conflict. */
  const save = useCallback(async (overwriteFrom?: number): Promise<boolean> => {
    const g = useGraph.getState();
    // The canvas must hold the flow in the URL, loaded and not a preview: never write A into B.
    if (g.flowId !== flowId || flow?.id !== flowId || preview !== null) {
      const why = preview !== null ? 'leave the version preview first' : 'the flow is still loading, try again in a moment';
      notify(`Not saved: ${why}.`, { kind: 'error' });
      return false;
    }
    if (!g.dirty && overwriteFrom === undefined) return true;
    if (g.readOnly || !canWrite) return false;
    const definition: FlowDefinition = g.definition();
    const baseVersion = overwriteFrom ?? g.version;
    setSaving(true);
    try {
      const saved = await flows.update(flowId, { definition, base_version: baseVersion });
      const now = useGraph.getState();
      if (now.flowId !== flowId) return false; // the user left while saving
      const editedMeanwhile = JSON.stringify(now.definition()) !== JSON.stringify(definition);
      now.markSaved(saved.version, saved.name);
      if (editedMeanwhile) useGraph.setState({ dirty: true }); // edits made during the save stay unsaved
      clearDraft(flowId);
      setFlow(saved);
      setConflict(null);
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 409 && err.errors.some((e) => e.path === 'body.base_version')) {
        setConflict({ baseVersion: g.version, currentVersion: (err.body?.current_version as number | undefined) ?? null });
      } else if (err instanceof ApiError && err.status === 422) {
        const { nodes, general } = errorsByNode(err.errors, g.edges);
        useGraph.getState().setErrors(nodes, general.length || Object.keys(nodes).length ? general : [err.detail ?? err.title]);
      } else {
        useGraph.getState().setErrors({}, [errorText(err)]);
      }
      return false;
    } finally {
      setSaving(false);
    }
  }, [flowId, canWrite, flow, preview]);

  const fit = useCallback(() => rf.current?.fitView({ padding: 0.2, duration: 300, maxZoom: 1.2 }), []);
  const shortcutHandlers = useMemo(() => ({ onSave: () => fire(save()), onFit: fit }), [save, fit]);
  useShortcuts(shortcutHandlers);

  const addAtCenter = (type: string) => {
    const el = document.querySelector('.canvas-wrap')?.getBoundingClientRect();
    const pos = rf.current && el ? rf.current.screenToFlowPosition({ x: el.x + el.width / 2, y: el.y + el.height / 2 }) : { x: 0, y: 0 };
    const spec = useCatalogue.getState().byType[type];
    useGraph.getState().addNode(type, { x: pos.x - 100, y: pos.y - 30 }, spec ? defaultParams(spec.params_schema) : {});
    setTab('node');
  };

  const showVersion = async (v: number) => {
    const signal = newLoad();
    try {
      const ver = await flows.version(flowId, v, signal);
      if (signal.aborted) return;
      useGraph.getState().load(asFlowDefinition(ver.definition), { flowId, name: flow?.name, version: v, readOnly: true });
      setPreview(v);
    } catch (err) {
      if (!signal.aborted) notifyError(err, `Could not open version ${v}`);
    }
  };

  const rename = (name: string) =>
    flows
      .update(flowId, { name })
      .then((f) => {
        useGraph.getState().setName(f.name);
        setFlow(f);
      })
      .catch((err: unknown) => notifyError(err, 'Rename failed'));

  if (loadError) {
    return (
      <div className="page">
        <div className="alert error" role="alert">
          Could not open this flow: {loadError}
        </div>
        <button className="btn" onClick={() => fire(openFlow(true))}>
          Retry
        </button>
      </div>
    );
  }

  return (
    <div className="editor">
      <Toolbar
        onSave={() => fire(save())}
        onFit={fit}
        saving={saving}
        canWrite={canWrite && !readOnly}
        draftNote="draft kept in localStorage"
        preview={preview}
        onRename={(name) => fire(rename(name))}
      />
      {conflict && (
        <ConflictBanner
          conflict={conflict}
          onReload={() => {
            clearDraft(flowId);
            fire(openFlow(false));
          }}
          onOverwrite={() => fire(save(conflict.currentVersion ?? undefined))}
        />
      )}
      {staleDraft && (
        <div className="banner warn">
          An unsaved draft from {timeAgo(staleDraft.savedAt)} (based on v{staleDraft.baseVersion}) exists.
          <button className="btn sm" onClick={() => (useGraph.getState().load(staleDraft.definition, { flowId, name: flow?.name, version: flow?.version, dirty: true }), setStaleDraft(null))}>
            Restore draft
          </button>
          <button className="btn sm ghost" onClick={() => (clearDraft(flowId), setStaleDraft(null))}>
            Discard
          </button>
        </div>
      )}
      {preview !== null && (
        <div className="banner info">
          Previewing version {preview} (read only).
          <button className="btn sm" onClick={() => fire(openFlow(true))}>
            Back to current
          </button>
        </div>
      )}
      {generalErrors.length > 0 && (
        <div className="banner error" data-testid="save-errors">
          Not saved: {generalErrors.join(' · ')}
        </div>
      )}
      <div className="editor-body">
        <Palette onAdd={addAtCenter} disabled={readOnly} />
        {catalogueReady && flow ? (
          <FlowCanvas onReady={(i) => (rf.current = i)} onNodeClick={() => setTab('node')} />
        ) : catalogueError && !catalogueReady ? (
          <div className="canvas-wrap empty" role="alert">
            <div className="alert error">Could not load the node catalogue: {catalogueError}</div>
            <button className="btn" onClick={() => fire(loadCatalogue())} data-testid="catalogue-retry">
              Retry
            </button>
          </div>
        ) : (
          <div className="canvas-wrap empty" role="status">
            Loading…
          </div>
        )}
        <aside className="sidepanel">
          <nav className="tabs">
            {TABS.map(([t, label]) => (
              <button key={t} className={tab === t ? 'active' : ''} onClick={() => setTab(t)} data-tab={t}>
                {label}
              </button>
            ))}
          </nav>
          <div className="sidepanel-scroll">
            {tab === 'node' &&
              (selectedId && !selectedId.includes(' ') ? (
                <NodeConfigPanel nodeId={selectedId} />
              ) : (
                <div className="panel-body">
                  <h3>{selectedId ?? 'No node selected'}</h3>
                  {selectedId && canWrite && !readOnly && (
                    <div className="row gap-sm" style={{ marginBottom: 12 }}>
                      <button className="btn sm" onClick={() => useGraph.getState().copy()}>
                        Copy
                      </button>
                      <button className="btn sm" onClick={() => (useGraph.getState().copy(), useGraph.getState().paste())}>
                        Duplicate
                      </button>
                      <button className="btn sm danger" onClick={() => useGraph.getState().deleteSelected()}>
                        Delete
                      </button>
                    </div>
                  )}
                  <p className="muted small">
                    Drag nodes from the palette, connect an output port (right) to an input port (left), then select a node to
                    configure it. Shift-drag draws a selection box; Ctrl+C / Ctrl+V copy and paste.
                  </p>
                </div>
              ))}
            {tab === 'run' && <PlaygroundPanel flowId={flowId} ensureSaved={save} canRun={can('runs:write')} />}
            {tab === 'batch' && <BatchPanel flowId={flowId} ensureSaved={save} canRun={can('runs:write')} />}
            {tab === 'deploy' && (
              <DeployPanel flowId={flowId} canManageKeys={can('keys:write')} flow={flow} canPublish={canWrite} onFlowChanged={setFlow} />
            )}
            {tab === 'versions' && (
              <VersionsPanel flowId={flowId} current={flow?.version ?? 0} published={flow?.published_version} canWrite={canWrite} onRestored={() => fire(openFlow(false))} onPreview={(v) => fire(showVersion(v))} />
            )}
          </div>
        </aside>
      </div>
    </div>
  );
}
