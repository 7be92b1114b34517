// The signed-in frame: top bar (brand, Flows / Runs / Ops / Providers links shown by permission, the
// user and sign-out) around the routed page (<Outlet/>). Ops is visible only with the ops:read
// permission, Providers only to admins.
import { Suspense } from 'react';
import { NavLink, Outlet, useNavigate } from 'react-router-dom';
import { useAuth } from '../stores/auth';
import { fire } from '../lib/fire';

export function Layout() {
  const user = useAuth((s) => s.user);
  const can = useAuth((s) => s.can);
  const isAdmin = useAuth((s) => s.isAdmin());
  const logout = useAuth((s) => s.logout);
  const navigate = useNavigate();
  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="brand-mark" aria-hidden>
            ◆
          </span>
          MAX Flowstudio
        </div>
        <nav className="topnav">
          <NavLink to="/" end>
            Flows
          </NavLink>
          {can('runs:read') && <NavLink to="/runs">Runs</NavLink>}
          {can('ops:read') && <NavLink to="/ops">Ops</NavLink>}
          {isAdmin && <NavLink to="/providers">Providers</NavLink>}
        </nav>
        <div className="topbar-user">
          <span className="user-chip" title={user?.permissions.join(', ')}>
            <span className="avatar">{(user?.name || user?.email || '?').slice(0, 1).toUpperCase()}</span>
            <span>{user?.email}</span>
            {user?.roles.map((r) => (
              <span key={r} className="role-badge">
                {r}
              </span>
            ))}
          </span>
          <button
            className="btn ghost sm"
            onClick={() => fire(logout().then(() => navigate('/login')))}
          >
            Sign out
          </button>
        </div>
      </header>
      <main className="main">
        <Suspense fallback={<div className="splash">Loading…</div>}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}
