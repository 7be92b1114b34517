// The app shell: asks the auth store who is signed in (GET /api/auth/me), then routes.
// Hash routing (#/flows/…) so deep links work under the API's static file server, which has no
// SPA fallback. /login -> LoginPage; everything else sits in Layout (top bar) behind the auth gate:
// / FlowsPage, /flows/:id EditorPage, /runs RunsPage, /runs/:id ReplayPage, /ops OpsPage,
// /providers ProvidersPage (admins). Each route renders inside its own ErrorBoundary (a crash
// shows a Retry, not a blank app) and the notice region (components/Notices.tsx, aria-live) is
// mounted once for every page.
import { lazy, useEffect } from 'react';
import { HashRouter, Navigate, Route, Routes, useLocation } from 'react-router-dom';
import { ErrorBoundary } from './components/ErrorBoundary';
import { Notices } from './components/Notices';
import { FlowsPage } from './pages/FlowsPage';
import { Layout } from './pages/Layout';
import { LoginPage } from './pages/LoginPage';
import { useAuth } from './stores/auth';
import { useCatalogue } from './stores/catalogue';
import { prefetchFlow } from './stores/prefetch';
import { fire } from './lib/fire';

// Heavier pages load on demand (code splitting keeps the first paint small); a deep link to the
// editor starts fetching its chunk and the node catalogue while /api/auth/me is in flight.
const loadEditor = () => import('./pages/EditorPage');
const deepFlow = /^#\/flows\/([0-9a-f-]{36})/.exec(window.location.hash);
if (deepFlow || window.location.hash.startsWith('#/runs/')) {
  fire(loadEditor());
  fire(useCatalogue.getState().load());
  if (deepFlow) prefetchFlow(deepFlow[1]);
}
const EditorPage = lazy(() => loadEditor().then((m) => ({ default: m.EditorPage })));
const ReplayPage = lazy(() => import('./pages/ReplayPage').then((m) => ({ default: m.ReplayPage })));
const RunsPage = lazy(() => import('./pages/RunsPage').then((m) => ({ default: m.RunsPage })));
const OpsPage = lazy(() => import('./pages/OpsPage').then((m) => ({ default: m.OpsPage })));
const ProvidersPage = lazy(() => import('./pages/ProvidersPage').then((m) => ({ default: m.ProvidersPage })));

function RequireAuth({ children }: { children: React.ReactNode }) {
  const status = useAuth((s) => s.status);
  const location = useLocation();
  if (status === 'unknown') return <div className="splash">Loading…</div>;
  if (status === 'anon') {
    return <Navigate to="/login" replace state={{ from: location.pathname + location.search }} />;
  }
  return <>{children}</>;
}

/** A route's page inside its own error boundary, reset when the location changes. */
function Guarded({ children }: { children: React.ReactNode }) {
  const location = useLocation();
  return <ErrorBoundary resetKey={location.pathname}>{children}</ErrorBoundary>;
}

export function App() {
  const refresh = useAuth((s) => s.refresh);
  useEffect(() => {
    fire(refresh());
  }, [refresh]);
  return (
    <HashRouter>
      <Notices />
      <Routes>
        <Route path="/login" element={<Guarded><LoginPage /></Guarded>} />
        <Route
          element={
            <RequireAuth>
              <Layout />
            </RequireAuth>
          }
        >
          <Route path="/" element={<Guarded><FlowsPage /></Guarded>} />
          <Route path="/flows/:flowId" element={<Guarded><EditorPage /></Guarded>} />
          <Route path="/runs" element={<Guarded><RunsPage /></Guarded>} />
          <Route path="/runs/:runId" element={<Guarded><ReplayPage /></Guarded>} />
          <Route path="/ops" element={<Guarded><OpsPage /></Guarded>} />
          <Route path="/providers" element={<Guarded><ProvidersPage /></Guarded>} />
          <Route path="*" element={<Navigate to="/" replace />} />
        </Route>
      </Routes>
    </HashRouter>
  );
}
