/* sk_chunks: one stored value, read in fixed-size chunks through ONE sqlite3_blob handle.
 *
 *   SELECT seq, offset, data, size FROM sk_chunks(:table, :column, :rowid, :chunk_bytes [, :start [, :stop]])
 *
 * yields rows (seq 0, 1, ...) of at most chunk_bytes raw bytes of `table.column` in row `rowid` of
 * the main database, from byte `start` (default 0) to `stop` (default the end). TEXT values come
 * as their stored UTF-8 bytes, exactly what CAST(x AS BLOB) returns. Neither SQLite nor the caller
 * ever holds the whole value: each chunk is read from the pages straight into a buffer that is
 * handed to the result row (no second copy), and the handle keeps its overflow-page list, so a
 * read costs the pages it covers (a new handle per chunk would walk the page chain from the start
 * every time, as substr() re-reads the whole value).
 *
 * Rules this file keeps:
 *  - the handle belongs to the cursor: xFilter opens it, xClose (statement reset or finalize)
 *    closes it, so it never outlives the statement;
 *  - the handle holds the connection's read transaction from open to close: all chunks come from
 *    one snapshot (in WAL mode other connections' commits stay invisible to it);
 *  - a row changed through this same connection while being read expires the handle: the next
 *    read fails with SQLITE_ABORT, reported as an error of the statement (never a crash);
 *  - rowid tables only (sqlite3_blob_open refuses WITHOUT ROWID tables with a clear message);
 *  - direct use only (SQLITE_VTAB_DIRECTONLY): a view or trigger in a hostile database file
 *    cannot use it to read other tables;
 *  - rows come in seq order and ORDER BY seq is consumed, so SQLite never sorts (buffers) chunks.
 *
 * sk_file_text: the write side, for a value too big to pass through JS whole.
 *
 *   INSERT INTO part (..., data) VALUES (..., sk_file_text(:path, :offset, :length))
 *
 * returns `length` bytes of the file at `path` from byte `offset` as TEXT (their UTF-8 as is),
 * read straight into the buffer SQLite then owns: the value exists once as this result and once
 * in the record SQLite builds from it, never in JS. (A TEXT value cannot be written lazily: a
 * zeroblob placeholder filled through sqlite3_blob_write would stay a BLOB, which OpenCode cannot
 * read as text, and `data || ?` appends rewrite the whole value per chunk.) Direct use only, so a
 * view or trigger of a hostile database cannot read files through it; a short file is an error.
 *
 * sk_text_zeros and sk_blob_write_file: the same without the value ever whole in memory.
 *
 *   INSERT INTO part (..., data) VALUES (..., sk_text_zeros(:length));
 *   SELECT sk_blob_write_file('part', 'data', :rowid, :path, :offset);
 *
 * A zeroblob is written to the pages lazily (SQLite never allocates its zeros), but it is a BLOB.
 * SQLite's record builder also takes a TEXT value with lazy zeros (OP_MakeRecord adds MEM_Zero's
 * count to the serial type of a MEM_Str as of a MEM_Blob), yet no public API makes one: so
 * sk_text_zeros asks for a zeroblob and turns its flags from BLOB to TEXT. That touches SQLite's
 * private `Mem` struct, hence every guard we can have: only when the SQLite running is the one
 * compiled against (better-sqlite3 bundles it), only when the result is exactly the zeroblob
 * expected in the layout expected, else an error the caller answers by taking sk_file_text.
 * sk_blob_write_file then fills the TEXT value in place through ONE sqlite3_blob handle (a write
 * keeps the value's type), 1 MiB at a time, reads each chunk back and compares it, and returns
 * the bytes written (the value's size); a file shorter than that from offset is an error.
 *
 * sk_row_json: one row of a session's other tables as an archive encodes it (src/core/table-row.ts),
 * built in one pass over the row's values instead of a value each into JS and back out as pieces.
 *
 *   SELECT rowid, sk_row_json('{"id":', "id", ',"seq":', "seq", ...) FROM event WHERE ...
 *
 * takes (key text, value) pairs, the key text being what precedes the value (`{"name":` first,
 * `,"name":` after), and returns the row's JSON (TEXT up to 64 KB, a BLOB above): NULL as null, an integer of at most
 * 2^53 in magnitude in decimal, TEXT that starts and ends as an object or array and is strict
 * RFC 8259 JSON in strict UTF-8 (what SQLite's json_valid accepts, never more) raw, other valid UTF-8 TEXT as a
 * string escaped as JSON.stringify escapes it. Anything else (a REAL, a BLOB, a larger integer,
 * TEXT that is not UTF-8, a JSON-looking TEXT it cannot vouch for, TEXT of 8 MB or more, more
 * than 64 columns) returns NULL, and the caller encodes that row the way it always has: this is a
 * faster path to the same bytes, never a second encoding. Deterministic and direct use only.
 *
 * sk_json_valid(x): 1 where that same parser vouches for TEXT x, else NULL, for
 * coalesce(sk_json_valid(x), json_valid(x)): SQLite's verdict, in about three quarters of
 * json_valid's time on OpenCode's parts.
 *
 * sk_pack_parts(budget, rowid, id, message_id, time_created, time_updated, bytes, data, verdict):
 * an aggregate packing a page's part rows, in the order they come, into one BLOB (the reader's
 * format: src/store/sqlite/rows.ts unpackParts): per row rowid, the times and bytes as
 * little-endian int64, id, message_id and data each as an int32 length and the bytes (data -1:
 * none), the verdict as a byte (2: NULL). Once `budget` data bytes are packed, a later row's data
 * and verdict are left out, as the row-by-row reading does. A row it does not vouch for (an
 * integer past 2^53, a REAL, a NULL id, data that is not a BLOB) makes the result NULL: the
 * caller then reads the rows one by one. No rows: an empty BLOB.
 */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* Bumped when the columns or arguments change; the JS side checks it. */
#define SK_CHUNKS_VERSION 5
/* A chunk is one result value: keep it far below any length limit a connection may set. */
#define SK_CHUNK_MAX (256 * 1024 * 1024)

enum {
  COL_SEQ, COL_OFFSET, COL_DATA, COL_SIZE,
  COL_TABLE, COL_COLUMN, COL_ROWID, COL_CHUNK, COL_START, COL_STOP
};
#define FIRST_ARG COL_TABLE
#define ARG_COUNT (COL_STOP - COL_TABLE + 1)
/* table, column, rowid and chunk size must be given; start and stop may be. */
#define REQUIRED_ARGS 0x0f

typedef struct ChunkTable {
  sqlite3_vtab base;
  sqlite3 *db;          /* the connection whose values are read */
} ChunkTable;

typedef struct ChunkCursor {
  sqlite3_vtab_cursor base;
  sqlite3_blob *blob;   /* open from xFilter to xClose (or the next xFilter) */
  sqlite3_int64 seq;
  int size;             /* bytes of the whole value */
  int offset;           /* first byte of the current chunk */
  int stop;             /* one past the last byte to read */
  int chunk;            /* bytes per chunk */
} ChunkCursor;

static int chunksConnect(sqlite3 *db, void *aux, int argc, const char *const *argv,
                         sqlite3_vtab **ppVtab, char **pzErr) {
  (void)aux; (void)argc; (void)argv; (void)pzErr;
  int rc = sqlite3_declare_vtab(db,
      "CREATE TABLE x(seq INTEGER, offset INTEGER, data BLOB, size INTEGER,"
      " tbl HIDDEN, col HIDDEN, row_id HIDDEN, chunk HIDDEN, start HIDDEN, stop HIDDEN)");
  if (rc != SQLITE_OK) return rc;
  ChunkTable *table = sqlite3_malloc(sizeof(*table));
  if (table == 0) return SQLITE_NOMEM;
  memset(table, 0, sizeof(*table));
  table->db = db;
  sqlite3_vtab_config(db, SQLITE_VTAB_DIRECTONLY);
  *ppVtab = &table->base;
  return SQLITE_OK;
}

static int chunksDisconnect(sqlite3_vtab *vtab) {
  sqlite3_free(vtab);
  return SQLITE_OK;
}

static int chunksOpen(sqlite3_vtab *vtab, sqlite3_vtab_cursor **ppCursor) {
  (void)vtab;
  ChunkCursor *cur = sqlite3_malloc(sizeof(*cur));
  if (cur == 0) return SQLITE_NOMEM;
  memset(cur, 0, sizeof(*cur));
  *ppCursor = &cur->base;
  return SQLITE_OK;
}

static void closeBlob(ChunkCursor *cur) {
  if (cur->blob) sqlite3_blob_close(cur->blob);
  cur->blob = 0;
}

static int chunksClose(sqlite3_vtab_cursor *base) {
  ChunkCursor *cur = (ChunkCursor *)base;
  closeBlob(cur);
  sqlite3_free(cur);
  return SQLITE_OK;
}

/* An integer argument: better-sqlite3 binds JS numbers as REAL, so an integral REAL counts too. */
static int integerArg(sqlite3_value *value, sqlite3_int64 *out) {
  switch (sqlite3_value_type(value)) {
    case SQLITE_INTEGER:
      *out = sqlite3_value_int64(value);
      return 1;
    case SQLITE_FLOAT: {
      double real = sqlite3_value_double(value);
      if (!(real >= -9.0e18 && real <= 9.0e18) || real != (double)(sqlite3_int64)real) return 0;
      *out = (sqlite3_int64)real;
      return 1;
    }
    default:
      return 0;
  }
}

/* Replaces the table's error message; SQLite moves it to the statement and frees it. */
static int fail(sqlite3_vtab_cursor *base, int rc, const char *message) {
  sqlite3_free(base->pVtab->zErrMsg);
  base->pVtab->zErrMsg = sqlite3_mprintf("sk_chunks: %s", message);
  return base->pVtab->zErrMsg ? rc : SQLITE_NOMEM;
}

/* Arguments arrive in column order; idxNum has one bit per argument present. */
static int chunksFilter(sqlite3_vtab_cursor *base, int idxNum, const char *idxStr, int argc, sqlite3_value **argv) {
  (void)idxStr;
  ChunkCursor *cur = (ChunkCursor *)base;
  sqlite3 *db = ((ChunkTable *)base->pVtab)->db;
  closeBlob(cur);
  cur->seq = 0;
  cur->size = cur->offset = cur->stop = 0;
  if ((idxNum & REQUIRED_ARGS) != REQUIRED_ARGS || argc < 4) {
    return fail(base, SQLITE_ERROR, "needs (table, column, rowid, chunk_bytes)");
  }
  const char *table = (const char *)sqlite3_value_text(argv[0]);
  const char *column = (const char *)sqlite3_value_text(argv[1]);
  if (table == 0 || column == 0) return fail(base, SQLITE_ERROR, "table and column must be names");
  /* NULL: a subquery such as (SELECT rowid FROM part WHERE id = ?) found no row. */
  if (sqlite3_value_type(argv[2]) == SQLITE_NULL) return fail(base, SQLITE_ERROR, "no such row");
  sqlite3_int64 rowid = 0;
  if (!integerArg(argv[2], &rowid)) return fail(base, SQLITE_ERROR, "rowid must be an integer");
  sqlite3_int64 chunk = 0;
  if (!integerArg(argv[3], &chunk) || chunk < 1 || chunk > SK_CHUNK_MAX) {
    return fail(base, SQLITE_ERROR, "chunk_bytes must be an integer from 1 to 268435456");
  }
  sqlite3_int64 start = 0;
  sqlite3_int64 stop = -1;
  int next = 4;
  /* start and stop may be NULL (from the start, to the end); stop before start reads nothing. */
  if (idxNum & (1 << (COL_START - FIRST_ARG))) {
    if (sqlite3_value_type(argv[next]) != SQLITE_NULL && (!integerArg(argv[next], &start) || start < 0)) {
      return fail(base, SQLITE_ERROR, "start must be a non-negative integer");
    }
    next++;
  }
  if ((idxNum & (1 << (COL_STOP - FIRST_ARG))) && sqlite3_value_type(argv[next]) != SQLITE_NULL) {
    if (!integerArg(argv[next], &stop) || stop < 0) return fail(base, SQLITE_ERROR, "stop must be a non-negative integer");
  }

  int rc = sqlite3_blob_open(db, "main", table, column, rowid, 0, &cur->blob);
  if (rc != SQLITE_OK) {
    /* "no such rowid: N", "cannot open value of type null", "no such table: main.x", ... */
    char *message = sqlite3_mprintf("%s", sqlite3_errmsg(db));
    closeBlob(cur); /* a failed open may still return a handle to close */
    rc = fail(base, rc, message ? message : "cannot open the value");
    sqlite3_free(message);
    return rc;
  }
  cur->size = sqlite3_blob_bytes(cur->blob);
  cur->chunk = (int)chunk;
  cur->stop = (stop < 0 || stop > cur->size) ? cur->size : (int)stop;
  cur->offset = start > cur->stop ? cur->stop : (int)start;
  return SQLITE_OK;
}

static int chunksNext(sqlite3_vtab_cursor *base) {
  ChunkCursor *cur = (ChunkCursor *)base;
  int length = cur->stop - cur->offset;
  cur->offset += length < cur->chunk ? length : cur->chunk;
  cur->seq++;
  return SQLITE_OK;
}

static int chunksEof(sqlite3_vtab_cursor *base) {
  ChunkCursor *cur = (ChunkCursor *)base;
  return cur->blob == 0 || cur->offset >= cur->stop;
}

/* The data column is read only when asked for, straight into the buffer the row then owns. */
static int chunksColumn(sqlite3_vtab_cursor *base, sqlite3_context *ctx, int column) {
  ChunkCursor *cur = (ChunkCursor *)base;
  switch (column) {
    case COL_SEQ: sqlite3_result_int64(ctx, cur->seq); break;
    case COL_OFFSET: sqlite3_result_int64(ctx, cur->offset); break;
    case COL_SIZE: sqlite3_result_int64(ctx, cur->size); break;
    case COL_DATA: {
      int length = cur->stop - cur->offset;
      if (length > cur->chunk) length = cur->chunk;
      unsigned char *bytes = sqlite3_malloc(length);
      if (bytes == 0) {
        sqlite3_result_error_nomem(ctx);
        break;
      }
      int rc = sqlite3_blob_read(cur->blob, bytes, length, cur->offset);
      if (rc != SQLITE_OK) {
        sqlite3_free(bytes);
        sqlite3_result_error(ctx,
            rc == SQLITE_ABORT ? "sk_chunks: the row changed while it was being read" : "sk_chunks: cannot read the value", -1);
        sqlite3_result_error_code(ctx, rc);
        break;
      }
      sqlite3_result_blob(ctx, bytes, length, sqlite3_free); /* the row owns the buffer now */
      break;
    }
    default: sqlite3_result_null(ctx); break; /* hidden argument columns */
  }
  return SQLITE_OK;
}

static int chunksRowid(sqlite3_vtab_cursor *base, sqlite3_int64 *pRowid) {
  *pRowid = ((ChunkCursor *)base)->seq;
  return SQLITE_OK;
}

/* Usable only with equality constraints on table, column, rowid and chunk size (start, stop optional). */
static int chunksBestIndex(sqlite3_vtab *vtab, sqlite3_index_info *info) {
  (void)vtab;
  int argIndex[ARG_COUNT];
  int present = 0;
  int unusable = 0;
  for (int i = 0; i < ARG_COUNT; i++) argIndex[i] = -1;
  for (int i = 0; i < info->nConstraint; i++) {
    const struct sqlite3_index_constraint *c = &info->aConstraint[i];
    if (c->iColumn < FIRST_ARG) continue;
    int arg = c->iColumn - FIRST_ARG;
    if (!c->usable) {
      unusable |= 1 << arg;
      continue;
    }
    if (c->op != SQLITE_INDEX_CONSTRAINT_EQ) continue;
    argIndex[arg] = i;
    present |= 1 << arg;
  }
  if ((present & REQUIRED_ARGS) != REQUIRED_ARGS) {
    /* A plan where a required argument is not yet known: ask for another join order. */
    if (unusable & REQUIRED_ARGS) return SQLITE_CONSTRAINT;
    sqlite3_free(vtab->zErrMsg);
    vtab->zErrMsg = sqlite3_mprintf("sk_chunks: needs (table, column, rowid, chunk_bytes)");
    return SQLITE_ERROR;
  }
  int next = 1;
  for (int arg = 0; arg < ARG_COUNT; arg++) {
    if (argIndex[arg] < 0) continue;
    info->aConstraintUsage[argIndex[arg]].argvIndex = next++;
    info->aConstraintUsage[argIndex[arg]].omit = 1;
  }
  info->idxNum = present;
  info->estimatedCost = 1.0;
  info->estimatedRows = 64;
  /* Rows come in seq (and offset) order: let ORDER BY seq cost nothing instead of a sort. */
  if (info->nOrderBy == 1 && !info->aOrderBy[0].desc &&
      (info->aOrderBy[0].iColumn == COL_SEQ || info->aOrderBy[0].iColumn == COL_OFFSET)) {
    info->orderByConsumed = 1;
  }
  return SQLITE_OK;
}

/* Read-only and eponymous-only (no xCreate): it exists on every connection that loads this file. */
static sqlite3_module chunksModule = {
  .iVersion = 0,
  .xConnect = chunksConnect,
  .xBestIndex = chunksBestIndex,
  .xDisconnect = chunksDisconnect,
  .xOpen = chunksOpen,
  .xClose = chunksClose,
  .xFilter = chunksFilter,
  .xNext = chunksNext,
  .xEof = chunksEof,
  .xColumn = chunksColumn,
  .xRowid = chunksRowid,
};

static void versionFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc; (void)argv;
  sqlite3_result_int(ctx, SK_CHUNKS_VERSION);
}

/* sk_file_text(path, offset, length): see the file comment. */
static void fileTextFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  const char *path = (const char *)sqlite3_value_text(argv[0]);
  sqlite3_int64 offset = 0, length = 0;
  if (path == 0) {
    sqlite3_result_error(ctx, "sk_file_text: path must be text", -1);
    return;
  }
  if (!integerArg(argv[1], &offset) || offset < 0 || !integerArg(argv[2], &length) || length < 0) {
    sqlite3_result_error(ctx, "sk_file_text: offset and length must be non-negative integers", -1);
    return;
  }
  if (length > sqlite3_limit(sqlite3_context_db_handle(ctx), SQLITE_LIMIT_LENGTH, -1)) {
    sqlite3_result_error_toobig(ctx);
    return;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    char *message = sqlite3_mprintf("sk_file_text: cannot open %s: %s", path, strerror(errno));
    sqlite3_result_error(ctx, message ? message : "sk_file_text: cannot open the file", -1);
    sqlite3_free(message);
    return;
  }
  /* One byte more for the terminator SQLite would otherwise add by copying. */
  unsigned char *bytes = sqlite3_malloc64((sqlite3_uint64)length + 1);
  if (bytes == 0) {
    close(fd);
    sqlite3_result_error_nomem(ctx);
    return;
  }
  sqlite3_int64 got = 0;
  while (got < length) {
    ssize_t n = pread(fd, bytes + got, (size_t)(length - got), (off_t)(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  close(fd);
  if (got != length) {
    sqlite3_free(bytes);
    sqlite3_result_error(ctx, "sk_file_text: the file is shorter than the value", -1);
    return;
  }
  bytes[length] = 0;
  sqlite3_result_text64(ctx, (const char *)bytes, (sqlite3_uint64)length, sqlite3_free, SQLITE_UTF8);
}

/* The head of SQLite's private Mem (sqlite3.c, struct sqlite3_value), as of 3.53; checked at run time. */
typedef struct SkMemHead {
  union { double r; sqlite3_int64 i; int nZero; const char *zPType; void *pDef; } u;
  char *z;
  int n;
  unsigned short flags;
  unsigned char enc;
  unsigned char eSubtype;
} SkMemHead;
#define SK_MEM_Str  0x0002
#define SK_MEM_Blob 0x0010
#define SK_MEM_Zero 0x0400

/* sk_text_zeros(length): a TEXT value of `length` zero bytes that SQLite writes lazily; see the file comment. */
static void textZerosFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  sqlite3_int64 length = 0;
  if (!integerArg(argv[0], &length) || length < 0 || length > 0x7fffffff) {
    sqlite3_result_error(ctx, "sk_text_zeros: length must be a non-negative integer", -1);
    return;
  }
  if (sqlite3_libversion_number() != SQLITE_VERSION_NUMBER || SQLITE_VERSION_NUMBER / 1000 != 3053) {
    sqlite3_result_error(ctx, "sk_text_zeros: not supported by this SQLite build", -1);
    return;
  }
  if (sqlite3_result_zeroblob64(ctx, (sqlite3_uint64)length) != SQLITE_OK) return; /* too big: the error is set */
  SkMemHead *out = *(SkMemHead **)ctx; /* sqlite3_context's first member is its result Mem */
  if (out == 0 || out->flags != (SK_MEM_Blob | SK_MEM_Zero) || out->n != 0 || out->z != 0 || out->u.nZero != (int)length ||
      out->enc != SQLITE_UTF8 || sqlite3_value_type((sqlite3_value *)out) != SQLITE_BLOB ||
      sqlite3_value_bytes((sqlite3_value *)out) != (int)length) {
    sqlite3_result_error(ctx, "sk_text_zeros: not supported by this SQLite build", -1);
    return;
  }
  out->flags = SK_MEM_Str | SK_MEM_Zero;
}

/* sk_blob_write_file(table, column, rowid, path, offset): see the file comment. */
static void blobWriteFileFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  sqlite3 *db = sqlite3_context_db_handle(ctx);
  const char *table = (const char *)sqlite3_value_text(argv[0]);
  const char *column = (const char *)sqlite3_value_text(argv[1]);
  const char *path = (const char *)sqlite3_value_text(argv[3]);
  sqlite3_int64 rowid = 0, offset = 0;
  if (table == 0 || column == 0 || path == 0 || !integerArg(argv[2], &rowid) || !integerArg(argv[4], &offset) || offset < 0) {
    sqlite3_result_error(ctx, "sk_blob_write_file: needs (table, column, rowid, path, offset)", -1);
    return;
  }
  sqlite3_blob *blob = 0;
  if (sqlite3_blob_open(db, "main", table, column, rowid, 1, &blob) != SQLITE_OK) {
    char *message = sqlite3_mprintf("sk_blob_write_file: %s", sqlite3_errmsg(db));
    if (blob) sqlite3_blob_close(blob);
    sqlite3_result_error(ctx, message ? message : "sk_blob_write_file: cannot open the value", -1);
    sqlite3_free(message);
    return;
  }
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  const int chunk = 1024 * 1024;
  unsigned char *bytes = sqlite3_malloc(chunk);
  unsigned char *back = sqlite3_malloc(chunk);
  const char *error = 0;
  char *failed = 0;
  int size = sqlite3_blob_bytes(blob);
  sqlite3_int64 at = 0;
  if (fd < 0) error = "sk_blob_write_file: cannot open the file";
  else if (bytes == 0 || back == 0) error = "sk_blob_write_file: out of memory";
  while (error == 0) {
    int want = size - at < chunk ? (int)(size - at) : chunk;
    ssize_t n = want == 0 ? 0 : pread(fd, bytes, (size_t)want, (off_t)(offset + at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { error = "sk_blob_write_file: cannot read the file"; break; }
    if (n == 0) {
      /* The file must hold the whole value from offset (more after it is the caller's business). */
      if (at != size) error = "sk_blob_write_file: the file is shorter than the value";
      break;
    }
    int wrc = sqlite3_blob_write(blob, bytes, (int)n, (int)at);
    if (wrc == SQLITE_OK) wrc = sqlite3_blob_read(blob, back, (int)n, (int)at);
    if (wrc != SQLITE_OK) {
      /* SQLite's own reason (out of memory, disk full, I/O) is what a user can act on. */
      failed = sqlite3_mprintf("sk_blob_write_file: cannot write the value at byte %lld: %s", (long long)at, sqlite3_errstr(wrc));
      error = failed ? failed : "sk_blob_write_file: cannot write the value";
      break;
    }
    if (memcmp(bytes, back, (size_t)n) != 0) { error = "sk_blob_write_file: the value read back differs"; break; }
    at += n;
  }
  if (fd >= 0) close(fd);
  sqlite3_free(bytes);
  sqlite3_free(back);
  int rc = sqlite3_blob_close(blob);
  if (error == 0 && rc != SQLITE_OK) error = "sk_blob_write_file: cannot close the value";
  if (error) sqlite3_result_error(ctx, error, -1);
  else sqlite3_result_int64(ctx, at);
  sqlite3_free(failed);
}

/* ---- sk_row_json ---- */

#define ROW_JSON_MAX_COLUMNS 64
/* Deeper JSON is left to the caller: SQLite's own parser stops at 1000 levels. */
#define ROW_JSON_MAX_DEPTH 500
/* What the caller reads in chunks instead (session-export.ts CHUNKED_VALUE_BYTES). */
#define ROW_JSON_MAX_TEXT (8 * 1024 * 1024)
#define ROW_JSON_MAX_INT 9007199254740992LL
/* Rows up to this size come back as TEXT, larger ones as a BLOB. */
#define ROW_JSON_TEXT_MAX (64 * 1024)

typedef const unsigned char *Bytes;

static int jsonSkipSpace(Bytes z, int i, int n) {
  while (i < n && (z[i] == ' ' || z[i] == '\t' || z[i] == '\n' || z[i] == '\r')) i++;
  return i;
}

static int isHex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

#define SWAR_ONES 0x0101010101010101ULL
#define SWAR_HIGHS 0x8080808080808080ULL
/* Whether any of the 8 bytes is '"', '\\', below 0x20 or above 0x7f (exact: a borrow starts only at such a byte). */
static int swarSpecial(uint64_t w) {
  uint64_t quote = w ^ (SWAR_ONES * '"'), backslash = w ^ (SWAR_ONES * '\\');
  uint64_t found = ((quote - SWAR_ONES) & ~quote) | ((backslash - SWAR_ONES) & ~backslash) | ((w - SWAR_ONES * 0x20) & ~w) | w;
  return (found & SWAR_HIGHS) != 0;
}

/* The length of the UTF-8 sequence at z[i] (a byte >= 0x80 leads it), or -1: strict, as Node's isUtf8 (no overlong forms, no surrogates, nothing past U+10FFFF). */
static int utf8Sequence(Bytes z, int i, int n) {
  unsigned char c = z[i];
  int extra;
  if (c >= 0xc2 && c <= 0xdf) extra = 1;
  else if (c >= 0xe0 && c <= 0xef) extra = 2;
  else if (c >= 0xf0 && c <= 0xf4) extra = 3;
  else return -1;
  if (i + extra >= n) return -1;
  unsigned char c1 = z[i + 1];
  if ((c1 & 0xc0) != 0x80) return -1;
  if (c == 0xe0 && c1 < 0xa0) return -1;
  if (c == 0xed && c1 > 0x9f) return -1;
  if (c == 0xf0 && c1 < 0x90) return -1;
  if (c == 0xf4 && c1 > 0x8f) return -1;
  for (int k = 2; k <= extra; k++) if ((z[i + k] & 0xc0) != 0x80) return -1;
  return extra + 1;
}

/* The end of the string starting at z[i] == '"', or -1: escapes as RFC 8259 has them, no control bytes, strict UTF-8. */
static int jsonString(Bytes z, int i, int n) {
  int j = i + 1;
  while (j < n) {
    /* Eight plain bytes at a time: a string's body (base64, prose) is most of a part. */
    for (uint64_t w; j + 8 <= n; j += 8) {
      memcpy(&w, z + j, 8);
      if (swarSpecial(w)) break;
    }
    if (j >= n) return -1;
    unsigned char c = z[j];
    if (c == '"') return j + 1;
    if (c < 0x20) return -1;
    if (c >= 0x80) {
      int length = utf8Sequence(z, j, n);
      if (length < 0) return -1;
      j += length;
      continue;
    }
    if (c != '\\') { j++; continue; }
    if (j + 1 >= n) return -1;
    c = z[j + 1];
    if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't') j += 2;
    else if (c == 'u' && j + 5 < n && isHex(z[j + 2]) && isHex(z[j + 3]) && isHex(z[j + 4]) && isHex(z[j + 5])) j += 6;
    else return -1;
  }
  return -1;
}

static int jsonNumber(Bytes z, int i, int n) {
  int j = i;
  if (j < n && z[j] == '-') j++;
  if (j >= n) return -1;
  if (z[j] == '0') j++;
  else if (z[j] >= '1' && z[j] <= '9') { while (j < n && z[j] >= '0' && z[j] <= '9') j++; }
  else return -1;
  if (j < n && z[j] == '.') {
    j++;
    if (j >= n || z[j] < '0' || z[j] > '9') return -1;
    while (j < n && z[j] >= '0' && z[j] <= '9') j++;
  }
  if (j < n && (z[j] == 'e' || z[j] == 'E')) {
    j++;
    if (j < n && (z[j] == '+' || z[j] == '-')) j++;
    if (j >= n || z[j] < '0' || z[j] > '9') return -1;
    while (j < n && z[j] >= '0' && z[j] <= '9') j++;
  }
  return j;
}

static int jsonLiteral(Bytes z, int i, int n, const char *word, int length) {
  return i + length <= n && memcmp(z + i, word, (size_t)length) == 0 ? i + length : -1;
}

/* The end of the value starting at z[i] (no space before it), or -1. */
static int jsonValue(Bytes z, int i, int n, int depth) {
  if (i >= n) return -1;
  switch (z[i]) {
    case '"': return jsonString(z, i, n);
    case 't': return jsonLiteral(z, i, n, "true", 4);
    case 'f': return jsonLiteral(z, i, n, "false", 5);
    case 'n': return jsonLiteral(z, i, n, "null", 4);
    case '{': {
      if (depth >= ROW_JSON_MAX_DEPTH) return -1;
      int j = jsonSkipSpace(z, i + 1, n);
      if (j < n && z[j] == '}') return j + 1;
      for (;;) {
        if (j >= n || z[j] != '"') return -1;
        j = jsonString(z, j, n);
        if (j < 0) return -1;
        j = jsonSkipSpace(z, j, n);
        if (j >= n || z[j] != ':') return -1;
        j = jsonValue(z, jsonSkipSpace(z, j + 1, n), n, depth + 1);
        if (j < 0) return -1;
        j = jsonSkipSpace(z, j, n);
        if (j < n && z[j] == '}') return j + 1;
        if (j >= n || z[j] != ',') return -1;
        j = jsonSkipSpace(z, j + 1, n);
      }
    }
    case '[': {
      if (depth >= ROW_JSON_MAX_DEPTH) return -1;
      int j = jsonSkipSpace(z, i + 1, n);
      if (j < n && z[j] == ']') return j + 1;
      for (;;) {
        j = jsonValue(z, j, n, depth + 1);
        if (j < 0) return -1;
        j = jsonSkipSpace(z, j, n);
        if (j < n && z[j] == ']') return j + 1;
        if (j >= n || z[j] != ',') return -1;
        j = jsonSkipSpace(z, j + 1, n);
      }
    }
    default:
      return (z[i] == '-' || (z[i] >= '0' && z[i] <= '9')) ? jsonNumber(z, i, n) : -1;
  }
}

/* True when the n bytes are one JSON text (strict RFC 8259) with nothing around it. */
static int isStrictJson(Bytes z, int n) {
  return jsonValue(z, 0, n, 0) == n;
}

/* The bytes of the JSON string body JSON.stringify writes for valid UTF-8 `z`, or -1 when `z` is not valid UTF-8. */
static sqlite3_int64 escapedLength(Bytes z, int n) {
  sqlite3_int64 length = 0;
  int i = 0;
  while (i < n) {
    unsigned char c = z[i];
    if (c < 0x80) {
      if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') length += 2;
      else if (c < 0x20) length += 6;
      else length += 1;
      i++;
      continue;
    }
    int sequence = utf8Sequence(z, i, n);
    if (sequence < 0) return -1;
    length += sequence;
    i += sequence;
  }
  return length;
}

static unsigned char *writeEscaped(unsigned char *out, Bytes z, int n) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < n; i++) {
    unsigned char c = z[i];
    if (c >= 0x20 && c != '"' && c != '\\') { *out++ = c; continue; }
    *out++ = '\\';
    switch (c) {
      case '"': *out++ = '"'; break;
      case '\\': *out++ = '\\'; break;
      case '\b': *out++ = 'b'; break;
      case '\f': *out++ = 'f'; break;
      case '\n': *out++ = 'n'; break;
      case '\r': *out++ = 'r'; break;
      case '\t': *out++ = 't'; break;
      default: *out++ = 'u'; *out++ = '0'; *out++ = '0'; *out++ = (unsigned char)hex[c >> 4]; *out++ = (unsigned char)hex[c & 15];
    }
  }
  return out;
}

/*
 * sk_json_valid(x): 1 when x is TEXT that is strict RFC 8259 JSON (the parser above), else NULL,
 * never 0: the caller asks SQLite's json_valid for those (coalesce), so the verdict stays SQLite's
 * wherever this parser cannot vouch (deeper than ROW_JSON_MAX_DEPTH, not TEXT, not JSON).
 */
static void jsonValidFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  if (sqlite3_value_type(argv[0]) != SQLITE_TEXT) return;
  Bytes z = sqlite3_value_text(argv[0]);
  int n = sqlite3_value_bytes(argv[0]);
  if (z != 0 && isStrictJson(z, n)) sqlite3_result_int(ctx, 1);
}

/* ---- sk_pack_parts ---- */

typedef struct PackedParts {
  unsigned char *bytes;
  sqlite3_int64 length, capacity;
  sqlite3_int64 inlined; /* data bytes packed so far, against the budget */
  int refused;           /* a row this packing does not vouch for: the result is NULL */
} PackedParts;

static int packReserve(PackedParts *p, sqlite3_int64 more) {
  if (p->length + more <= p->capacity) return 1;
  sqlite3_int64 capacity = p->capacity ? p->capacity : 64 * 1024;
  while (capacity < p->length + more) capacity *= 2;
  unsigned char *grown = sqlite3_realloc64(p->bytes, (sqlite3_uint64)capacity);
  if (grown == 0) return 0;
  p->bytes = grown;
  p->capacity = capacity;
  return 1;
}

static void packInt64(PackedParts *p, sqlite3_int64 x) {
  for (int i = 0; i < 8; i++) p->bytes[p->length++] = (unsigned char)((sqlite3_uint64)x >> (8 * i));
}

static void packBytes(PackedParts *p, const void *z, int n) {
  for (int i = 0; i < 4; i++) p->bytes[p->length++] = (unsigned char)((unsigned)n >> (8 * i));
  if (n > 0) memcpy(p->bytes + p->length, z, (size_t)n);
  p->length += n;
}

static int safeInteger(sqlite3_value *v) {
  if (sqlite3_value_type(v) != SQLITE_INTEGER) return 0;
  sqlite3_int64 x = sqlite3_value_int64(v);
  return x <= ROW_JSON_MAX_INT && x >= -ROW_JSON_MAX_INT;
}

/* sk_pack_parts(budget, rowid, id, message_id, time_created, time_updated, bytes, data, valid): see the file comment. */
static void packPartsStep(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  PackedParts *p = sqlite3_aggregate_context(ctx, sizeof(PackedParts));
  if (p == 0) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (p->refused) return;
  sqlite3_value *data = argv[7], *valid = argv[8];
  int dataType = sqlite3_value_type(data), validType = sqlite3_value_type(valid);
  int budgetType = sqlite3_value_type(argv[0]); /* a bound JS number comes as a REAL */
  if ((budgetType != SQLITE_INTEGER && budgetType != SQLITE_FLOAT) || !safeInteger(argv[1]) || !safeInteger(argv[6]) || sqlite3_value_type(argv[2]) != SQLITE_TEXT ||
      sqlite3_value_type(argv[3]) != SQLITE_TEXT || !safeInteger(argv[4]) || !safeInteger(argv[5]) ||
      (dataType != SQLITE_NULL && dataType != SQLITE_BLOB) || (validType != SQLITE_NULL && validType != SQLITE_INTEGER) ||
      (validType == SQLITE_INTEGER && sqlite3_value_int64(valid) != 0 && sqlite3_value_int64(valid) != 1)) {
    p->refused = 1;
    return;
  }
  const unsigned char *id = sqlite3_value_text(argv[2]);
  int idBytes = sqlite3_value_bytes(argv[2]);
  const unsigned char *messageId = sqlite3_value_text(argv[3]);
  int messageIdBytes = sqlite3_value_bytes(argv[3]);
  const void *z = dataType == SQLITE_BLOB ? sqlite3_value_blob(data) : 0;
  int n = dataType == SQLITE_BLOB ? sqlite3_value_bytes(data) : -1;
  int verdict = validType == SQLITE_INTEGER ? (int)sqlite3_value_int64(valid) : 2;
  /* Past the budget a row keeps its sizes only, its data and verdict left to a read of its own. */
  if (n >= 0 && p->inlined + n > sqlite3_value_int64(argv[0])) {
    z = 0;
    n = -1;
    verdict = 2;
  }
  if ((idBytes > 0 && id == 0) || (messageIdBytes > 0 && messageId == 0) || (n > 0 && z == 0)) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  if (!packReserve(p, 4 * 8 + 3 * 4 + idBytes + messageIdBytes + (n > 0 ? n : 0) + 1)) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  packInt64(p, sqlite3_value_int64(argv[1]));
  packInt64(p, sqlite3_value_int64(argv[4]));
  packInt64(p, sqlite3_value_int64(argv[5]));
  packInt64(p, sqlite3_value_int64(argv[6]));
  packBytes(p, id, idBytes);
  packBytes(p, messageId, messageIdBytes);
  if (n < 0) {
    for (int i = 0; i < 4; i++) p->bytes[p->length++] = 0xff;
  } else {
    packBytes(p, z, n);
    p->inlined += n;
  }
  p->bytes[p->length++] = (unsigned char)verdict;
}

static void packPartsFinal(sqlite3_context *ctx) {
  PackedParts *p = sqlite3_aggregate_context(ctx, 0);
  if (p == 0) {
    sqlite3_result_zeroblob(ctx, 0); /* no rows */
    return;
  }
  if (!p->refused && p->length > 0x7fffffff) p->refused = 1;
  if (p->refused) sqlite3_free(p->bytes);
  else if (p->bytes == 0) sqlite3_result_zeroblob(ctx, 0);
  else sqlite3_result_blob64(ctx, p->bytes, (sqlite3_uint64)p->length, sqlite3_free);
  p->bytes = 0;
}

enum { ROW_NULL, ROW_INTEGER, ROW_RAW, ROW_STRING };

/* sk_row_json(key, value, key, value, ...): see the file comment. */
static void rowJsonFunc(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  if (argc < 2 || argc % 2 != 0) {
    sqlite3_result_error(ctx, "sk_row_json: needs (key, value) pairs", -1);
    return;
  }
  int columns = argc / 2;
  if (columns > ROW_JSON_MAX_COLUMNS) return; /* NULL: the caller's own encoding */
  unsigned char kinds[ROW_JSON_MAX_COLUMNS];
  char integers[ROW_JSON_MAX_COLUMNS][24];
  sqlite3_int64 total = 1; /* the closing brace */
  for (int c = 0; c < columns; c++) {
    sqlite3_value *key = argv[2 * c], *value = argv[2 * c + 1];
    if (sqlite3_value_type(key) != SQLITE_TEXT) {
      sqlite3_result_error(ctx, "sk_row_json: a key must be text", -1);
      return;
    }
    total += sqlite3_value_bytes(key);
    switch (sqlite3_value_type(value)) {
      case SQLITE_NULL:
        kinds[c] = ROW_NULL;
        total += 4;
        break;
      case SQLITE_INTEGER: {
        sqlite3_int64 x = sqlite3_value_int64(value);
        if (x > ROW_JSON_MAX_INT || x < -ROW_JSON_MAX_INT) return;
        kinds[c] = ROW_INTEGER;
        total += snprintf(integers[c], sizeof integers[c], "%lld", (long long)x);
        break;
      }
      case SQLITE_TEXT: {
        Bytes z = sqlite3_value_text(value);
        int n = sqlite3_value_bytes(value);
        if (z == 0 || n >= ROW_JSON_MAX_TEXT) return;
        if (n >= 2 && ((z[0] == '{' && z[n - 1] == '}') || (z[0] == '[' && z[n - 1] == ']'))) {
          /* Raw only when it is surely JSON; a container SQLite might judge otherwise is the caller's. */
          if (!isStrictJson(z, n)) return;
          kinds[c] = ROW_RAW;
          total += n;
        } else {
          sqlite3_int64 escaped = escapedLength(z, n);
          if (escaped < 0) return;
          kinds[c] = ROW_STRING;
          total += escaped + 2;
        }
        break;
      }
      default:
        return; /* REAL, BLOB */
    }
  }
  if (total > 0x7fffffff) return;
  unsigned char *bytes = sqlite3_malloc64((sqlite3_uint64)total);
  if (bytes == 0) {
    sqlite3_result_error_nomem(ctx);
    return;
  }
  unsigned char *out = bytes;
  for (int c = 0; c < columns; c++) {
    int keyBytes = sqlite3_value_bytes(argv[2 * c]);
    memcpy(out, sqlite3_value_text(argv[2 * c]), (size_t)keyBytes);
    out += keyBytes;
    sqlite3_value *value = argv[2 * c + 1];
    switch (kinds[c]) {
      case ROW_NULL: memcpy(out, "null", 4); out += 4; break;
      case ROW_INTEGER: { size_t length = strlen(integers[c]); memcpy(out, integers[c], length); out += length; break; }
      case ROW_RAW: { int n = sqlite3_value_bytes(value); memcpy(out, sqlite3_value_text(value), (size_t)n); out += n; break; }
      default: *out++ = '"'; out = writeEscaped(out, sqlite3_value_text(value), sqlite3_value_bytes(value)); *out++ = '"';
    }
  }
  *out++ = '}';
  sqlite3_uint64 length = (sqlite3_uint64)(out - bytes);
  /* A small row as TEXT (every piece is strict UTF-8, so the caller's string of it encodes back to
     these bytes, and a string costs it less than a Buffer); a large one as a BLOB, off its heap. */
  if (length <= ROW_JSON_TEXT_MAX) sqlite3_result_text64(ctx, (const char *)bytes, length, sqlite3_free, SQLITE_UTF8);
  else sqlite3_result_blob64(ctx, bytes, length, sqlite3_free);
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_valuechunks_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  (void)pzErrMsg;
  SQLITE_EXTENSION_INIT2(pApi);
  int rc = sqlite3_create_module(db, "sk_chunks", &chunksModule, 0);
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_chunks_version", 0, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                 0, versionFunc, 0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_row_json", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, 0, rowJsonFunc, 0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_pack_parts", 9, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, 0, 0, packPartsStep, packPartsFinal);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_json_valid", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_DIRECTONLY, 0, jsonValidFunc, 0, 0);
  }
#ifndef _WIN32
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_file_text", 3, SQLITE_UTF8 | SQLITE_DIRECTONLY, 0, fileTextFunc, 0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_text_zeros", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, 0, textZerosFunc, 0, 0);
  }
  if (rc == SQLITE_OK) {
    rc = sqlite3_create_function(db, "sk_blob_write_file", 5, SQLITE_UTF8 | SQLITE_DIRECTONLY, 0, blobWriteFileFunc, 0, 0);
  }
#endif
  return rc;
}
