// Browses a whole database as the Desktop app would: every session page, every message page,
// every attachment decoded to a file. Run under a small --max-old-space-size; prints a JSON
// summary (counts, sha256 per ref, peak heaps) as its last line.
import { getHeapStatistics } from 'node:v8';
import { SessionService } from '../../dist/main/service.js';

const [db, cacheDir] = process.argv.slice(2);
const service = await SessionService.open({ db, cacheDir });
let mainHeapPeak = 0;
const sample = () => {
  mainHeapPeak = Math.max(mainHeapPeak, getHeapStatistics().used_heap_size);
};
const timer = setInterval(sample, 5);

const refs = [];
const collect = (node) => {
  if (Array.isArray(node)) node.forEach(collect);
  else if (node && typeof node === 'object') {
    if (node.attachment && typeof node.attachment.ref === 'string') refs.push(node.attachment.ref);
    Object.values(node).forEach(collect);
  }
};

let sessions = 0;
let messages = 0;
let parts = 0;
let cursor = null;
do {
  const page = await service.listSessions({ limit: 50, cursor });
  for (const session of page.sessions) {
    sessions++;
    let messageCursor = null;
    do {
      const show = await service.showSession(session.id, { limit: 20, cursor: messageCursor });
      for (const message of show.messages) {
        messages++;
        parts += message.parts.length;
        collect(message.parts);
      }
      messageCursor = show.nextCursor;
      sample();
    } while (messageCursor);
  }
  cursor = page.nextCursor;
} while (cursor);

const attachments = {};
let attachmentBytes = 0;
for (const ref of refs) {
  const result = await service.attachment(ref);
  attachments[ref] = result.sha256;
  attachmentBytes += result.bytes;
  sample();
}
clearInterval(timer);
sample();
await service.close();
process.stdout.write(
  `${JSON.stringify({ sessions, messages, parts, attachments: refs.length, attachmentBytes, hashes: attachments, mainHeapPeak, workerHeapPeak: service.workerHeapPeak })}\n`,
);
