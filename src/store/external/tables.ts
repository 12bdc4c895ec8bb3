/** The tables of our server schema, as Kysely sees them (schema.ts creates them and says what each holds). */
export interface SkTables {
  sk_migrations: { version: number; name: string; applied_at: number };
  sk_project: { id: string; row_json: string };
  sk_session: {
    id: string;
    project_id: string;
    parent_id: string | null;
    title: string;
    time_created: number;
    time_updated: number;
    time_archived: number | null;
    row_json: string;
    extras_json: string | null;
    messages: number;
    parts: number;
    bytes: number;
    digest: string | null;
    complete: number;
  };
  sk_message: {
    id: string;
    session_id: string;
    time_created: number;
    time_updated: number;
    bytes: number;
    body: Buffer;
    data: string | null;
  };
  sk_part: {
    id: string;
    message_id: string;
    session_id: string;
    time_created: number;
    time_updated: number;
    bytes: number;
    body: Buffer;
    data: string | null;
    attachments: string | null;
    att_count: number;
    att_bytes: number;
    att_encoded: number;
  };
  /** A row of another table a session owns (event log, session_message, ...), encoded as core/table-row.ts does. */
  sk_row: {
    session_id: string;
    table_name: string;
    /** Order of the row among the session's rows, which is the order a restore inserts them in. */
    ord: number;
    bytes: number;
    body: Buffer;
    attachments: string | null;
    att_count: number;
    att_bytes: number;
    att_encoded: number;
  };
  sk_attachment: { sha256: string; bytes: number; chunks: number; complete: number };
  sk_sync_source: { source_id: string; name: string; time_seen: number };
  sk_sync_session: { session_id: string; source_id: string; time_updated: number; mark: string; digest: string; time_synced: number };
  sk_sync_base: { source_id: string; session_id: string; time_updated: number; mark: string; digest: string; time_synced: number };
  sk_attachment_chunk: { sha256: string; seq: number; data: Buffer };
}
