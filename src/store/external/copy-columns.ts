/** Our tables' columns as a bulk load (COPY) sends them, in the order of its cells; types as the schema declares them (INT is int4). */
import type { CopyColumn } from './dialect.js';

/** A stored value with its attachments cut out, and their facts: what sk_part and sk_row hold alike. */
const CUT_VALUE: readonly CopyColumn[] = [
  { name: 'bytes', type: 'int8' },
  { name: 'body', type: 'blob' },
  { name: 'attachments', type: 'text' },
  { name: 'att_count', type: 'int4' },
  { name: 'att_bytes', type: 'int8' },
  { name: 'att_encoded', type: 'int8' },
];

/** `data`, the jsonb copy, is made by the server from the body's text. */
export const COPY_COLUMNS: Record<'sk_message' | 'sk_part' | 'sk_row' | 'sk_attachment_chunk', readonly CopyColumn[]> = {
  sk_message: [
    { name: 'id', type: 'text' },
    { name: 'session_id', type: 'text' },
    { name: 'time_created', type: 'int8' },
    { name: 'time_updated', type: 'int8' },
    { name: 'bytes', type: 'int8' },
    { name: 'body', type: 'blob' },
    { name: 'data', type: 'json' },
  ],
  sk_part: [
    { name: 'id', type: 'text' },
    { name: 'message_id', type: 'text' },
    { name: 'session_id', type: 'text' },
    { name: 'time_created', type: 'int8' },
    { name: 'time_updated', type: 'int8' },
    ...CUT_VALUE,
    { name: 'data', type: 'json' },
  ],
  sk_row: [{ name: 'session_id', type: 'text' }, { name: 'table_name', type: 'text' }, { name: 'ord', type: 'int4' }, ...CUT_VALUE],
  // An attachment's chunks: sha256, sequence number, bytes.
  sk_attachment_chunk: [
    { name: 'sha256', type: 'text' },
    { name: 'seq', type: 'int4' },
    { name: 'data', type: 'blob' },
  ],
};
