/* Leak and memory-error check of native/value_chunks.c: compiled into one program with
 * better-sqlite3's SQLite amalgamation (SQLITE_CORE), every path walked (whole reads, ranges,
 * finalize mid-read, a cursor filtered again in a join, each argument error, SQLITE_ABORT, and
 * sk_row_json's kinds of values and what it leaves to the caller, sk_json_valid's verdicts),
 * AddressSanitizer and UndefinedBehaviorSanitizer on, LeakSanitizer at exit. About a minute to
 * build, so not part of the test suite; run it after changing the C file:
 *
 *   S=node_modules/better-sqlite3/deps/sqlite3
 *   cc -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -DSQLITE_CORE -I $S -I native \
 *      native/test/value_chunks_check.c native/value_chunks.c $S/sqlite3.c -o /tmp/value_chunks_check -lm
 *   /tmp/value_chunks_check      # prints "ok (0 failures)", exit 0; any leak fails the exit code
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sqlite3.h"
int sqlite3_valuechunks_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi);

static int failures = 0;
static void check(int ok, const char *what) { if (!ok) { printf("FAIL: %s\n", what); failures++; } }

/* Steps `sql` up to `limit` rows (-1: all); returns rows seen, sets *rc to the final code. */
static int run(sqlite3 *db, const char *sql, int limit, int *rc, long long *bytes) {
  sqlite3_stmt *st = 0;
  *rc = sqlite3_prepare_v2(db, sql, -1, &st, 0);
  if (*rc != SQLITE_OK) return -1;
  int rows = 0;
  *bytes = 0;
  while ((limit < 0 || rows < limit) && (*rc = sqlite3_step(st)) == SQLITE_ROW) {
    *bytes += sqlite3_column_bytes(st, 0);
    rows++;
  }
  if (*rc == SQLITE_ROW) *rc = SQLITE_OK; /* left early: finalize mid-read */
  else if (*rc == SQLITE_DONE) *rc = SQLITE_OK;
  sqlite3_finalize(st);
  return rows;
}


/* sk_row_json's one result for `sql`: its bytes equal `want` (NULL: the result is NULL). */
static void rowJson(sqlite3 *db, const char *sql, const char *want) {
  sqlite3_stmt *st = 0;
  int ok = sqlite3_prepare_v2(db, sql, -1, &st, 0) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
  if (ok && want == 0) ok = sqlite3_column_type(st, 0) == SQLITE_NULL;
  else if (ok) ok = (sqlite3_column_type(st, 0) == SQLITE_TEXT || sqlite3_column_type(st, 0) == SQLITE_BLOB) && (size_t)sqlite3_column_bytes(st, 0) == strlen(want) &&
                    memcmp(sqlite3_column_blob(st, 0), want, strlen(want)) == 0;
  sqlite3_finalize(st);
  check(ok, sql);
}

int main(void) {
  sqlite3 *db;
  int rc; long long bytes;
  sqlite3_open(":memory:", &db);
  sqlite3_valuechunks_init(db, 0, 0);
  sqlite3_exec(db, "CREATE TABLE t(id TEXT PRIMARY KEY, data TEXT, n INTEGER);"
                   "INSERT INTO t VALUES ('a', hex(randomblob(500000)), 1), ('b', NULL, 2), ('c', '', 3);"
                   "CREATE TABLE w(id TEXT PRIMARY KEY, data TEXT) WITHOUT ROWID; INSERT INTO w VALUES ('x','y');", 0, 0, 0);
  int rows = run(db, "SELECT data FROM sk_chunks('t','data',1,65536)", -1, &rc, &bytes);
  check(rc == SQLITE_OK && rows == 16 && bytes == 1000000, "whole read");
  rows = run(db, "SELECT data FROM sk_chunks('t','data',1,1000,10,20010) ORDER BY seq", -1, &rc, &bytes);
  check(rc == SQLITE_OK && rows == 20 && bytes == 20000, "range");
  rows = run(db, "SELECT data FROM sk_chunks('t','data',1,4096)", 3, &rc, &bytes);
  check(rc == SQLITE_OK && rows == 3, "finalized mid-read");
  rows = run(db, "SELECT c.data FROM t, sk_chunks('t','data',t.rowid,300000) c WHERE t.data IS NOT NULL", -1, &rc, &bytes);
  check(rc == SQLITE_OK && rows == 4 && bytes == 1000000, "join: xFilter again on one cursor");
  rows = run(db, "SELECT seq FROM sk_chunks('t','data',1,7)", -1, &rc, &bytes);
  check(rc == SQLITE_OK && rows == 142858, "seq only: data never read");
  const char *errors[] = {
    "SELECT data FROM sk_chunks('t','data',2,10)", "SELECT data FROM sk_chunks('t','n',1,10)",
    "SELECT data FROM sk_chunks('t','data',99,10)", "SELECT data FROM sk_chunks('t','data',1,0)",
    "SELECT data FROM sk_chunks('t','data',1,1e300)", "SELECT data FROM sk_chunks('nope','data',1,10)",
    "SELECT data FROM sk_chunks('w','data',1,10)", "SELECT data FROM sk_chunks('t','data',NULL,10)",
    "SELECT data FROM sk_chunks('t','data',1,10,-1)", "SELECT data FROM sk_chunks('t','data',1.5,10)",
    "SELECT data FROM sk_chunks", "SELECT data FROM sk_chunks('t')",
  };
  for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
    run(db, errors[i], -1, &rc, &bytes);
    check(rc != SQLITE_OK, errors[i]);
  }
  /* sk_row_json: each kind of value, the edges of its buffers, and what it leaves to the caller. */
  rowJson(db, "SELECT sk_row_json('{\"a\":', 'x\"y\\z', ',\"b\":', NULL, ',\"c\":', 42, ',\"d\":', -9007199254740992)",
          "{\"a\":\"x\\\"y\\\\z\",\"b\":null,\"c\":42,\"d\":-9007199254740992}");
  rowJson(db, "SELECT sk_row_json('{\"a\":', CAST(X'01081f0a7f' AS TEXT))", "{\"a\":\"\\u0001\\b\\u001f\\n\x7f\"}");
  rowJson(db, "SELECT sk_row_json('{\"a\":', '{\"k\":[1,-2.5e3,true,null,\"\\u00e9\"]}')", "{\"a\":{\"k\":[1,-2.5e3,true,null,\"\\u00e9\"]}}");
  rowJson(db, "SELECT sk_row_json('{\"a\":', '')", "{\"a\":\"\"}");
  rowJson(db, "SELECT sk_row_json('{\"a\":', '{')", "{\"a\":\"{\"}");
  rowJson(db, "SELECT sk_row_json('{\"a\":', CAST(X'7b225c753132' AS TEXT))", "{\"a\":\"{\\\"\\\\u12\"}");
  const char *leftAlone[] = {
    "SELECT sk_row_json('{\"a\":', '{\"k\":\"\\u12}')", "SELECT sk_row_json('{\"a\":', '{\"k\":1,}')",
    "SELECT sk_row_json('{\"a\":', '[01]')", "SELECT sk_row_json('{\"a\":', CAST(X'7b2201227d' AS TEXT))",
    "SELECT sk_row_json('{\"a\":', CAST(X'61e282' AS TEXT))", "SELECT sk_row_json('{\"a\":', CAST(X'eda080' AS TEXT))",
    "SELECT sk_row_json('{\"a\":', CAST(X'c0af' AS TEXT))", "SELECT sk_row_json('{\"a\":', 9007199254740993)",
    "SELECT sk_row_json('{\"a\":', 1.5)", "SELECT sk_row_json('{\"a\":', X'00')",
    "SELECT sk_row_json('{\"a\":', printf('%.*c%.*c', 600, '[', 600, ']'))",
    "SELECT sk_row_json('{\"a\":', zeroblob(0) || printf('%.*c', 8388608, 'x'))",
  };
  for (size_t i = 0; i < sizeof(leftAlone) / sizeof(leftAlone[0]); i++) rowJson(db, leftAlone[i], 0);
  const char *rowErrors[] = { "SELECT sk_row_json('{\"a\":')", "SELECT sk_row_json(1, 2)", "SELECT sk_row_json()" };
  for (size_t i = 0; i < sizeof(rowErrors) / sizeof(rowErrors[0]); i++) {
    run(db, rowErrors[i], -1, &rc, &bytes);
    check(rc != SQLITE_OK, rowErrors[i]);
  }
  /* sk_json_valid: 1 for strict JSON in strict UTF-8, else NULL (the caller asks json_valid). */
  const char *jsonValid[] = {
    "SELECT sk_json_valid('{\"k\":[1,-2.5e3,true,null,\"\\u00e9\\n\"],\"l\":\"abcdefghijklmnopqrstuvwxyz\"}') IS 1",
    "SELECT sk_json_valid(CAST(X'7b2261223a22c3a9e282acf09f9880227d' AS TEXT)) IS 1", /* é € 😀 */
    "SELECT sk_json_valid('[]') IS 1", "SELECT sk_json_valid(' [ ] ') IS NULL", /* space around: SQLite's to judge */
    "SELECT sk_json_valid('\"0123456789abcdef0123456789\"') IS 1",
    "SELECT sk_json_valid('{\"k\":1,}') IS NULL", "SELECT sk_json_valid('[01]') IS NULL",
    "SELECT sk_json_valid('\"0123456789abcdef0123456789') IS NULL", /* ends inside the eight-byte loop */
    "SELECT sk_json_valid(CAST(X'2261626364656667016869' AS TEXT)) IS NULL", /* a control byte among plain ones */
    "SELECT sk_json_valid(CAST(X'226162636465666768e28222' AS TEXT)) IS NULL", /* a cut sequence */
    "SELECT sk_json_valid(CAST(X'22eda08022' AS TEXT)) IS NULL", "SELECT sk_json_valid(CAST(X'22c0af22' AS TEXT)) IS NULL",
    "SELECT sk_json_valid(CAST(X'22f4908080' AS TEXT)) IS NULL", "SELECT sk_json_valid(CAST(X'22e2' AS TEXT)) IS NULL",
    "SELECT sk_json_valid(X'7b7d') IS NULL", "SELECT sk_json_valid(NULL) IS NULL", "SELECT sk_json_valid(1) IS NULL",
    "SELECT sk_json_valid(printf('%.*c%.*c', 600, '[', 600, ']')) IS NULL",
    /* sk_pack_parts: the layout, the budget, and what it refuses. */
    "SELECT length(sk_pack_parts(100, 1, 'p', 'm', 2, 3, 2, X'7b7d', 1)) = 32 + 5 + 5 + 6 + 1",
    "SELECT hex(sk_pack_parts(1.5e6, 7, 'p', 'm', 2, 3, 2, X'7b7d', 0)) = '0700000000000000' || '0200000000000000' || '0300000000000000' || '0200000000000000' || '0100000070' || '010000006D' || '020000007B7D' || '00'",
    "SELECT hex(substr(x, 33 + 10, 5)) = 'FFFFFFFF02' FROM (SELECT sk_pack_parts(1, 1, 'p', 'm', 2, 3, 2, X'7b7d', 1) x)",
    "SELECT length(x) = 0 AND typeof(x) = 'blob' FROM (SELECT sk_pack_parts(10, rowid, id, 'm', 1, 1, 1, NULL, NULL) x FROM t WHERE 0)",
    "SELECT sk_pack_parts(10, 1, 'p', 'm', 1.5, 3, 2, X'7b7d', 1) IS NULL AND sk_pack_parts(10, 1, NULL, 'm', 1, 3, 2, X'7b7d', 1) IS NULL",
    "SELECT sk_pack_parts(10, 1, 'p', 'm', 9007199254740993, 3, 2, X'7b7d', 1) IS NULL AND sk_pack_parts(10, 1, 'p', 'm', 1, 3, 2, '{}', 1) IS NULL",
    "SELECT sk_pack_parts(10, 1, 'p', 'm', 1, 3, 2, X'7b7d', 5) IS NULL AND sk_pack_parts('x', 1, 'p', 'm', 1, 3, 2, X'7b7d', 1) IS NULL",
    "SELECT length(x) > 1000000 FROM (SELECT sk_pack_parts(1e9, rowid, 'p', 'm', 1, 1, length(data), CAST(data AS BLOB), NULL) x FROM t WHERE data IS NOT NULL)",
    /* sk_row_json: a small row as TEXT, one past 64 KB as a BLOB. */
    "SELECT typeof(sk_row_json('{\"a\":', 'x')) = 'text' AND typeof(sk_row_json('{\"a\":', printf('%.*c', 65530, 'x'))) = 'blob'",
  };
  for (size_t i = 0; i < sizeof(jsonValid) / sizeof(jsonValid[0]); i++) {
    sqlite3_stmt *q = 0;
    int ok = sqlite3_prepare_v2(db, jsonValid[i], -1, &q, 0) == SQLITE_OK && sqlite3_step(q) == SQLITE_ROW && sqlite3_column_int(q, 0) == 1;
    sqlite3_finalize(q);
    check(ok, jsonValid[i]);
  }
  /* The row changes under the handle: the next read is SQLITE_ABORT, reported as an error. */
  sqlite3_stmt *st;
  sqlite3_prepare_v2(db, "SELECT data FROM sk_chunks('t','data',1,1000)", -1, &st, 0);
  check(sqlite3_step(st) == SQLITE_ROW, "first chunk");
  sqlite3_exec(db, "UPDATE t SET n = n + 1 WHERE rowid = 1", 0, 0, 0);
  rc = sqlite3_step(st);
  check(rc == SQLITE_ABORT && strstr(sqlite3_errmsg(db), "changed while it was being read") != 0, "abort reported");
  sqlite3_finalize(st);
  rows = run(db, "SELECT data FROM sk_chunks('t','data',1,65536)", -1, &rc, &bytes);
  check(rc == SQLITE_OK && bytes == 1000000, "works after abort");
  check(sqlite3_close(db) == SQLITE_OK, "close: no statement or blob left open");
  printf("%s (%d failures)\n", failures ? "FAILED" : "ok", failures);
  return failures != 0;
}
