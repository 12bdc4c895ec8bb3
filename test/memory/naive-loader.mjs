// What OpenCode's export does, in essence: the whole part table into memory, then JSON.
import Database from 'better-sqlite3';

const db = new Database(process.argv[2], { readonly: true });
const rows = db.prepare('SELECT id, message_id, data FROM part').all();
const parsed = rows.map((row) => ({ ...row, data: JSON.parse(row.data) }));
process.stdout.write(`${JSON.stringify({ parts: parsed.length })}\n`);
