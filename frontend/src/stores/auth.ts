// Who is signed in: `refresh()` asks GET /api/auth/me (on app start), `login()` posts the
// credentials (the API sets the HttpOnly cookie) then refreshes, `logout()` clears it. `can(p)`
// answers role-aware UI questions from the user's permissions; `isAdmin()` tells an administrator
// (the users:admin permission only the admin role holds, which the API's admin routes require). http.ts's 401 hook resets to anon.
import { create } from 'zustand';
import { auth } from '../api/endpoints';
import { setUnauthorizedHandler } from '../api/http';
import type { User } from '../api/types';

interface AuthState {
  user: User | null;
  status: 'unknown' | 'anon' | 'authed';
  refresh: () => Promise<void>;
  login: (email: string, password: string) => Promise<void>;
  logout: () => Promise<void>;
  can: (permission: string) => boolean;
  isAdmin: () => boolean;
}

export const useAuth = create<AuthState>((set, get) => ({
  user: null,
  status: 'unknown',
  refresh: async () => {
    try {
      set({ user: await auth.me(), status: 'authed' });
    } catch {
      set({ user: null, status: 'anon' });
    }
  },
  login: async (email, password) => {
    await auth.login(email, password);
    await get().refresh();
  },
  logout: async () => {
    try {
      await auth.logout();
    } finally {
      set({ user: null, status: 'anon' });
    }
  },
  can: (permission) => get().user?.permissions.includes(permission) ?? false,
  isAdmin: () => get().can('users:admin'),
}));

setUnauthorizedHandler(() => useAuth.setState({ user: null, status: 'anon' }));
