/**
 * `attachment <ref>` of a session only the server holds: with `storage` naming the server and
 * --db the file, the ref `show` gave for the server-only session resolves on the server and
 * decodes (chunk by chunk, a multi-chunk PDF) into the attachment cache: the decoded bytes are the
 * original's, the path lies inside the cache; `--out` writes the same bytes; a ref neither store
 * holds is one line and exit 1. Then `restore --from` brings the session back with the part (over
 * 8 MB rebuilt, so it comes through a file of ours) exactly as it was, and the server's
 * `sessionProjects` labels its root (what the session browser shows). PostgreSQL and MariaDB.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachmentResultSchema, showResultSchema } from '../../src/core/api.js';
import { openReader } from '../../src/store/open-store.js';
import { generateFixture } from '../fixtures/generate.js';
import { parseJson, runCli, tempDir } from '../helpers/env.js';
import { freshDatabase, type FreshDatabase } from './servers.js';
import { mirrorAsPrimary } from './sync-helpers.js';

const PDF_BYTES = 9 * 1024 * 1024 + 123;
const sha256 = (bytes: Buffer): string => createHash('sha256').update(bytes).digest('hex');

describe.each(['postgres', 'mysql'] as const)('attachment of a server-only part (%s)', (backend) => {
  const dir = tempDir(`sk-one-view-att-${backend}-`);
  const db = join(dir, 'opencode.db');
  const cacheDir = join(dir, 'attachments');
  const env = { XDG_CONFIG_HOME: join(dir, 'config'), XDG_CACHE_HOME: join(dir, 'cache'), OPENCODE_DB: '' };
  let server: FreshDatabase;
  let partId = '';
  let sessionId = '';
  let original = '';
  /** The part's row and the session's project as the file held them. */
  let partRow = '';
  let projectId = '';
  const partRowOf = (): string => {
    const file = new Database(db, { readonly: true });
    try {
      const row = file.prepare('SELECT typeof(data) AS type, CAST(data AS BLOB) AS data, time_created, time_updated, message_id FROM part WHERE id = ?').get(partId) as { type: string; data: Buffer } & Record<string, unknown>;
      return JSON.stringify({ ...row, data: sha256(row.data) });
    } finally {
      file.close();
    }
  };

  beforeAll(async () => {
    const fixture = generateFixture({ path: db, targetBytes: 1024 * 1024, seed: 62, rootSessions: 4, hugeAttachmentBytes: PDF_BYTES, diffFiles: false });
    partId = fixture.hugePartId!;
    sessionId = fixture.hugeSessionId!;
    const file = new Database(db);
    file.pragma('foreign_keys = ON');
    // The original bytes, decoded here from the part's data: URL, not by the tool under test.
    const data = JSON.parse(file.prepare('SELECT data FROM part WHERE id = ?').pluck().get(partId) as string) as { url: string };
    original = sha256(Buffer.from(data.url.slice(data.url.indexOf(',') + 1), 'base64'));
    projectId = file.prepare('SELECT project_id FROM session WHERE id = ?').pluck().get(sessionId) as string;
    file.close();
    partRow = partRowOf();
    server = await freshDatabase(backend);
    expect(mirrorAsPrimary(dir, db, backend, server.url, env)).toBe(0);
    // The session leaves the file: only the server holds its part now.
    const again = new Database(db);
    again.pragma('foreign_keys = ON');
    again.prepare('DELETE FROM session WHERE id = ?').run(sessionId);
    expect(again.prepare('SELECT count(*) FROM part WHERE id = ?').pluck().get(partId)).toBe(0);
    again.close();
  }, 180_000);
  afterAll(async () => server?.drop());

  it('show gives the server-only part as a ref; attachment decodes that ref from the server into the cache', () => {
    const page = showResultSchema.parse(parseJson(runCli(['--db', db, '--json', 'show', sessionId], { env })));
    expect(page.where).toBe('server');
    const refs = page.messages.flatMap((m) => m.parts.map((p) => p['attachment'] as { ref: string; bytes: number } | undefined)).filter((a) => a !== undefined);
    expect(refs).toEqual([expect.objectContaining({ ref: partId, bytes: PDF_BYTES })]);

    const result = attachmentResultSchema.parse(parseJson(runCli(['--db', db, '--json', 'attachment', refs[0]!.ref], { env, cacheDir })));
    expect(result).toMatchObject({ ref: partId, bytes: PDF_BYTES, sha256: original, mime: 'application/pdf' });
    const bytes = readFileSync(result.path);
    expect(bytes.length).toBe(PDF_BYTES);
    expect(sha256(bytes)).toBe(original);
    // The cache rule holds for server parts too: the file lies inside the attachment cache.
    expect(relative(realpathSync(cacheDir), realpathSync(result.path)).startsWith('..')).toBe(false);
  });

  it('--out writes the same bytes; a ref neither store holds is one line and exit 1', () => {
    const out = join(dir, 'out.pdf');
    const result = attachmentResultSchema.parse(parseJson(runCli(['--db', db, '--json', 'attachment', partId, '--out', out], { env, cacheDir })));
    expect(result.path).toBe(out);
    expect(sha256(readFileSync(out))).toBe(original);
    const missing = runCli(['--db', db, 'attachment', 'prt_nowhere0000000000000000'], { env, cacheDir });
    expect(missing.status).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain('prt_nowhere');
  });

  it('the server labels the session’s project; restore --from puts the part back exactly as it was', async () => {
    const store = await openReader(server.url);
    try {
      const projects = await store.sessionProjects!();
      expect(projects.rootProject.get(sessionId)).toBe(projectId);
      expect(projects.projects.map((p) => p.id)).toContain(projectId);
    } finally {
      await store.close();
    }
    const restored = parseJson<{ restored: number }>(runCli(['--db', db, '--json', 'restore', '--from', server.url, sessionId], { env }));
    expect(restored.restored).toBe(1);
    expect(partRowOf()).toBe(partRow);
  });
});
