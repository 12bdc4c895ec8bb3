/* Raises SQLITE_LIMIT_LENGTH on the connection that loads it.
 * better-sqlite3 caps a value's length at V8's string limit (~536 MB), so a larger
 * part.data cannot be read at all, not even as a BLOB. Loaded only by our own
 * connections, which read such values as BLOBs (Buffers outside the V8 heap). */
#include "sqlite3ext.h"
SQLITE_EXTENSION_INIT1

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_limitlength_init(sqlite3 *db, char **pzErrMsg, const sqlite3_api_routines *pApi) {
  (void)pzErrMsg;
  SQLITE_EXTENSION_INIT2(pApi);
  sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 0x7fffffff); /* clamped to the compile-time SQLITE_MAX_LENGTH */
  return SQLITE_OK;
}
