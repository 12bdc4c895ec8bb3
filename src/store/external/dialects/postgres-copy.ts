/**
 * PostgreSQL's `COPY … FROM STDIN (FORMAT binary)` for bulk loads. Binary, because every value
 * then goes as its own bytes behind a length: a body is never escaped (no backslash, tab or
 * newline rules, and so no escape to split across chunk edges), bytea is not doubled into hex,
 * and a streamed value is written chunk by chunk behind the length it announced.
 */
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import type { Pool as PgPool } from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { CopyCell, CopyColumn, CopyIn, StreamedValue } from '../dialect.js';

/** The binary format's signature, then flags and header-extension length (both 0). */
const HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
/** A field count of -1 ends the data. */
const TRAILER = Buffer.from([0xff, 0xff]);
/** Small fields are gathered into CopyData messages of about this size (one per write). */
const PIECE_BYTES = 256 * 1024;
/** Room kept for the fixed-size fields (counts, lengths, integers) that follow a write. */
const FIXED_ROOM = 1024;
/** jsonb's binary input: a version byte, then the JSON text. */
const JSONB_VERSION = Buffer.from([1]);

const isStreamed = (cell: CopyCell): cell is StreamedValue => cell !== null && typeof cell === 'object' && !Buffer.isBuffer(cell);

/** Bytes into a COPY stream, small ones gathered; written without waiting, the caller waits between rows. */
class CopyWriter {
  private scratch = Buffer.allocUnsafe(PIECE_BYTES);
  private at = 0;

  constructor(
    private readonly stream: Writable,
    private readonly failure: Promise<never>,
  ) {}

  int16(n: number): void {
    this.room(2);
    this.at = this.scratch.writeInt16BE(n, this.at);
  }

  int32(n: number): void {
    this.room(4);
    this.at = this.scratch.writeInt32BE(n, this.at);
  }

  int64(n: number): void {
    this.room(8);
    if (!Number.isSafeInteger(n)) {
      this.at = this.scratch.writeBigInt64BE(BigInt(n), this.at);
      return;
    }
    // Two 32-bit halves: no BigInt made per value (the high half is signed, floor keeps negatives right).
    const high = Math.floor(n / 0x1_0000_0000);
    this.at = this.scratch.writeInt32BE(high, this.at);
    this.at = this.scratch.writeUInt32BE(n - high * 0x1_0000_0000, this.at);
  }

  /** Queues bytes (a large Buffer goes as its own message, uncopied); call `drain` between rows. */
  bytes(b: Buffer): void {
    if (b.length >= PIECE_BYTES / 4) {
      this.flush();
      this.stream.write(b);
      return;
    }
    if (this.at + b.length > this.scratch.length - FIXED_ROOM) this.flush();
    this.at += b.copy(this.scratch, this.at);
  }

  /** A text value behind its length, encoded straight into the piece when it fits. */
  text(value: string): void {
    const length = Buffer.byteLength(value, 'utf8');
    if (length >= PIECE_BYTES / 4) {
      this.int32(length);
      this.bytes(Buffer.from(value, 'utf8'));
      return;
    }
    if (this.at + 4 + length > this.scratch.length - FIXED_ROOM) this.flush();
    this.at = this.scratch.writeInt32BE(length, this.at);
    this.at += this.scratch.write(value, this.at, 'utf8');
  }

  /** Sends a full piece; while the socket is full, the promise to wait for (none when it is not: most rows). */
  drain(): Promise<void> | undefined {
    if (this.at >= PIECE_BYTES - FIXED_ROOM) this.flush();
    if (!this.stream.writableNeedDrain) return undefined;
    return Promise.race([once(this.stream, 'drain').then(() => undefined), this.failure]);
  }

  flush(): void {
    if (this.at === 0) return;
    const piece = this.scratch.subarray(0, this.at);
    // The stream keeps the piece until it is on the socket: the next one gets a fresh buffer.
    this.scratch = Buffer.allocUnsafe(PIECE_BYTES);
    this.at = 0;
    this.stream.write(piece);
  }

  private room(n: number): void {
    // COPY data may be cut into messages anywhere, even inside a field.
    if (this.at + n > this.scratch.length) this.flush();
  }
}

/** A cell's field; a streamed value is written chunk by chunk, waiting whenever the socket is full. */
function writeCell(out: CopyWriter, column: CopyColumn, cell: CopyCell): Promise<void> | undefined {
  if (cell === null) {
    out.int32(-1);
    return undefined;
  }
  switch (column.type) {
    case 'int4':
      out.int32(4);
      out.int32(Number(cell));
      return undefined;
    case 'int8':
      out.int32(8);
      out.int64(Number(cell));
      return undefined;
    case 'text':
    case 'blob':
    case 'json': {
      const prefix = column.type === 'json' ? JSONB_VERSION : null;
      if (typeof cell === 'number') throw new TypeError(`column ${column.name}: a number where bytes belong`);
      if (typeof cell === 'string' && !prefix) {
        out.text(cell);
        return undefined;
      }
      if (!isStreamed(cell)) {
        const bytes = typeof cell === 'string' ? Buffer.from(cell, 'utf8') : cell;
        out.int32(bytes.length + (prefix ? 1 : 0));
        if (prefix) out.bytes(prefix);
        out.bytes(bytes);
        return undefined;
      }
      out.int32(cell.bytes + (prefix ? 1 : 0));
      if (prefix) out.bytes(prefix);
      return writeStreamed(out, column, cell);
    }
  }
}

async function writeStreamed(out: CopyWriter, column: CopyColumn, cell: StreamedValue): Promise<void> {
  let sent = 0;
  for (const chunk of cell.chunks()) {
    sent += chunk.length;
    // More bytes than announced would shift every later field: stop before the server reads them.
    if (sent > cell.bytes) throw new RangeError(`column ${column.name}: a streamed value longer than its ${cell.bytes} bytes`);
    out.bytes(chunk);
    const full = out.drain();
    if (full) await full;
  }
  if (sent !== cell.bytes) throw new RangeError(`column ${column.name}: a streamed value of ${sent} bytes, ${cell.bytes} announced`);
}

const quoteName = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** One COPY per load, on a connection of `pool`; a load that fails leaves nothing and its connection is dropped. */
export function pgCopyIn(pool: PgPool): CopyIn {
  return {
    async load(table, columns, rows) {
      const client = await pool.connect();
      let broken: Error | undefined;
      try {
        const stream = client.query(copyFrom(`COPY ${quoteName(table)} (${columns.map((c) => quoteName(c.name)).join(', ')}) FROM STDIN (FORMAT binary)`));
        const failure = new Promise<never>((_, reject) => stream.on('error', reject));
        failure.catch(() => undefined);
        const out = new CopyWriter(stream, failure);
        try {
          out.bytes(HEADER);
          for (const cells of rows) {
            if (cells.length !== columns.length) throw new RangeError(`${table}: a row of ${cells.length} values for ${columns.length} columns`);
            out.int16(columns.length);
            for (let i = 0; i < columns.length; i++) {
              const streaming = writeCell(out, columns[i] as CopyColumn, cells[i] ?? null);
              if (streaming) await streaming;
            }
            const full = out.drain();
            if (full) await full;
          }
          out.bytes(TRAILER);
          out.flush();
          stream.end();
          // 'finish' comes after the server's ReadyForQuery: the rows are committed.
          await Promise.race([once(stream, 'finish'), failure]);
          return stream.rowCount;
        } catch (error) {
          // CopyFail (or the dropped connection) rolls the whole COPY back: none of its rows stay.
          if (!stream.destroyed) stream.destroy(error instanceof Error ? error : new Error(String(error)));
          throw error;
        }
      } catch (error) {
        broken = error instanceof Error ? error : new Error(String(error));
        throw error;
      } finally {
        // A connection whose COPY failed is not reused: whatever state it is in goes with it.
        client.release(broken ?? false);
      }
    },
  };
}
