import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// The console is served by the API process at /admin/, so every asset URL carries that base and
// API calls stay same-origin (the session cookie is SameSite and the CSP allows only 'self').
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/admin/',
  plugins: [react()],
  logLevel: 'warn',
  // `npx vite --config console/vite.config.ts`: hot reload, with API calls passed to a server on :8080.
  server: { proxy: { '/api': 'http://127.0.0.1:8080' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    // Hashed names under assets/ are what the server marks immutable.
    assetsDir: 'assets',
    chunkSizeWarningLimit: 2500,
    sourcemap: false,
  },
});
