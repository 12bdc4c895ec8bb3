// The ready-made preload script as CommonJS (sandboxed preloads cannot be ES modules): dist/electron/preload.cjs.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  logLevel: 'warn',
  build: {
    outDir: resolve(import.meta.dirname, 'dist/electron'),
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    lib: { entry: resolve(import.meta.dirname, 'src/main/electron/preload.ts'), formats: ['cjs'], fileName: () => 'preload.cjs' },
    rollupOptions: { external: ['electron'] },
  },
});
