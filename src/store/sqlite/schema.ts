/**
 * OpenCode 1.x storage schema (the tables session-keeper reads and writes), as OpenCode's
 * drizzle migrations leave them. Used to create fixture and restore targets; reading never
 * assumes more than `detectSchema` found.
 */
export const OPENCODE_SCHEMA_DDL = `
CREATE TABLE IF NOT EXISTS \`project\` (
  \`id\` text PRIMARY KEY,
  \`worktree\` text NOT NULL,
  \`vcs\` text,
  \`name\` text,
  \`icon_url\` text,
  \`icon_color\` text,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  \`time_initialized\` integer,
  \`sandboxes\` text NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS \`session\` (
  \`id\` text PRIMARY KEY,
  \`project_id\` text NOT NULL,
  \`workspace_id\` text,
  \`parent_id\` text,
  \`slug\` text NOT NULL,
  \`directory\` text NOT NULL,
  \`path\` text,
  \`title\` text NOT NULL,
  \`version\` text NOT NULL,
  \`share_url\` text,
  \`summary_additions\` integer,
  \`summary_deletions\` integer,
  \`summary_files\` integer,
  \`summary_diffs\` text,
  \`cost\` real DEFAULT 0 NOT NULL,
  \`tokens_input\` integer DEFAULT 0 NOT NULL,
  \`tokens_output\` integer DEFAULT 0 NOT NULL,
  \`tokens_reasoning\` integer DEFAULT 0 NOT NULL,
  \`tokens_cache_read\` integer DEFAULT 0 NOT NULL,
  \`tokens_cache_write\` integer DEFAULT 0 NOT NULL,
  \`revert\` text,
  \`permission\` text,
  \`agent\` text,
  \`model\` text,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  \`time_compacting\` integer,
  \`time_archived\` integer,
  CONSTRAINT \`fk_session_project_id_project_id_fk\` FOREIGN KEY (\`project_id\`) REFERENCES \`project\`(\`id\`) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS \`session_project_idx\` ON \`session\` (\`project_id\`);
CREATE INDEX IF NOT EXISTS \`session_parent_idx\` ON \`session\` (\`parent_id\`);
CREATE TABLE IF NOT EXISTS \`message\` (
  \`id\` text PRIMARY KEY,
  \`session_id\` text NOT NULL,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  \`data\` text NOT NULL,
  CONSTRAINT \`fk_message_session_id_session_id_fk\` FOREIGN KEY (\`session_id\`) REFERENCES \`session\`(\`id\`) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS \`message_session_time_created_id_idx\` ON \`message\` (\`session_id\`,\`time_created\`,\`id\`);
CREATE TABLE IF NOT EXISTS \`part\` (
  \`id\` text PRIMARY KEY,
  \`message_id\` text NOT NULL,
  \`session_id\` text NOT NULL,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  \`data\` text NOT NULL,
  CONSTRAINT \`fk_part_message_id_message_id_fk\` FOREIGN KEY (\`message_id\`) REFERENCES \`message\`(\`id\`) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS \`part_message_id_id_idx\` ON \`part\` (\`message_id\`,\`id\`);
CREATE INDEX IF NOT EXISTS \`part_session_idx\` ON \`part\` (\`session_id\`);
CREATE TABLE IF NOT EXISTS \`todo\` (
  \`session_id\` text NOT NULL,
  \`content\` text NOT NULL,
  \`status\` text NOT NULL,
  \`priority\` text NOT NULL,
  \`position\` integer NOT NULL,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  CONSTRAINT \`todo_pk\` PRIMARY KEY(\`session_id\`, \`position\`),
  CONSTRAINT \`fk_todo_session_id_session_id_fk\` FOREIGN KEY (\`session_id\`) REFERENCES \`session\`(\`id\`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS \`session_share\` (
  \`session_id\` text PRIMARY KEY,
  \`id\` text NOT NULL,
  \`secret\` text NOT NULL,
  \`url\` text NOT NULL,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  CONSTRAINT \`fk_session_share_session_id_session_id_fk\` FOREIGN KEY (\`session_id\`) REFERENCES \`session\`(\`id\`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS \`permission\` (
  \`project_id\` text PRIMARY KEY,
  \`time_created\` integer NOT NULL,
  \`time_updated\` integer NOT NULL,
  \`data\` text NOT NULL,
  CONSTRAINT \`fk_permission_project_id_project_id_fk\` FOREIGN KEY (\`project_id\`) REFERENCES \`project\`(\`id\`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS \`event_sequence\` (
  \`aggregate_id\` text PRIMARY KEY,
  \`seq\` integer NOT NULL
);
CREATE TABLE IF NOT EXISTS \`event\` (
  \`id\` text PRIMARY KEY,
  \`aggregate_id\` text NOT NULL,
  \`seq\` integer NOT NULL,
  \`type\` text NOT NULL,
  \`data\` text NOT NULL,
  CONSTRAINT \`fk_event_aggregate_id_event_sequence_aggregate_id_fk\` FOREIGN KEY (\`aggregate_id\`) REFERENCES \`event_sequence\`(\`aggregate_id\`) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS \`__drizzle_migrations\` (
  id INTEGER PRIMARY KEY,
  hash text NOT NULL,
  created_at numeric
);
`;

/** Tables whose presence marks a database as OpenCode 1.x. */
export const V1_TABLES = ['session', 'message', 'part'] as const;
