/** The ready-made preload script (built to dist/electron/preload.cjs for sandboxed windows). */
import { exposeSessionKeeper } from './preload-api.js';

exposeSessionKeeper();
