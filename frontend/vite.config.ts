// Vite config: React plugin, dev server on :3005 (API base from VITE_API_URL or the seed's
// REACT_APP_API_URL, read in src/api/http.ts), production build to dist/ (served by the API at /),
// and vitest (jsdom) for the unit and component tests under src/**/*.test.ts(x).
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  envPrefix: ['VITE_', 'REACT_APP_'],
  server: { port: 3005, strictPort: true, host: '127.0.0.1' },
  build: { outDir: 'dist', sourcemap: false, chunkSizeWarningLimit: 1500 },
  test: { environment: 'jsdom', include: ['src/**/*.test.ts', 'src/**/*.test.tsx'] },
});
