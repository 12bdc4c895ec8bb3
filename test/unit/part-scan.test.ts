import { describe, expect, it } from 'vitest';
import { attachmentRefName, findAttachments, parseAttachmentRef, scanPartData } from '../../src/core/part-scan.js';

const b64 = (bytes: Buffer): string => bytes.toString('base64');
const scan = (value: object | string, maxInlineString = 1024) =>
  scanPartData(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)), { partId: 'prt_1', maxInlineString });

describe('scanPartData', () => {
  it('replaces a file part url with a reference carrying mime, filename and decoded bytes', () => {
    const payload = Buffer.alloc(1001, 9);
    const result = scan({ type: 'file', mime: 'application/pdf', filename: 'spec.pdf', url: `data:application/pdf;base64,${b64(payload)}` });
    expect(result.attachments).toHaveLength(1);
    expect(result.value).toEqual({
      type: 'file',
      mime: 'application/pdf',
      filename: 'spec.pdf',
      attachment: { ref: 'prt_1', mime: 'application/pdf', filename: 'spec.pdf', bytes: 1001 },
    });
  });

  it('finds every attachment of a read tool part, in order, with distinct refs', () => {
    const a = Buffer.alloc(10, 1);
    const c = Buffer.alloc(11, 2);
    const result = scan({
      type: 'tool',
      tool: 'read',
      state: {
        status: 'completed',
        output: 'read 2 files',
        attachments: [
          { type: 'file', mime: 'image/png', filename: 'a.png', url: `data:image/png;base64,${b64(a)}` },
          { type: 'file', mime: 'application/pdf', filename: 'c.pdf', url: `data:application/pdf;base64,${b64(c)}` },
        ],
      },
    });
    const state = (result.value as { state: { attachments: { attachment: { ref: string; bytes: number } }[] } }).state;
    expect(state.attachments.map((x) => [x.attachment.ref, x.attachment.bytes])).toEqual([
      ['prt_1', 10],
      ['prt_1.1', 11],
    ]);
  });

  it('ignores "data:" inside other strings, escaped quotes and keys', () => {
    const raw = JSON.stringify({ type: 'text', text: 'he wrote "data:x" here \\"data:y', 'data:key': 1 });
    const result = scan(raw);
    expect(result.attachments).toHaveLength(0);
    expect(result.value).toEqual(JSON.parse(raw) as object);
  });

  it('cuts strings longer than the inline limit to a marked preview', () => {
    const text = 'x'.repeat(100_000);
    const result = scanPartData(Buffer.from(JSON.stringify({ type: 'text', text })), {
      partId: 'prt_1',
      maxInlineString: 1000,
      previewBytes: 10,
    });
    expect(result.truncatedStrings).toBe(1);
    expect((result.value as { text: string }).text).toBe('xxxxxxxxxx\n…[session-keeper: cut, 100000 bytes in all]');
  });

  it('never splits a unicode escape when cutting a preview', () => {
    const text = `${'é'.repeat(3)}${'\u2028'.repeat(5000)}`;
    const raw = `{"type":"text","text":${JSON.stringify(text).replace(/\u2028/g, '\\u2028')}}`;
    const result = scanPartData(Buffer.from(raw), { partId: 'prt_1', maxInlineString: 100, previewBytes: 11 });
    expect((result.value as { text: string }).text.startsWith('ééé')).toBe(true);
  });

  it('reports malformed JSON as a bad part, not a crash', () => {
    expect(() => scan('{"type":"text","text":"unterminated')).toThrow(/part prt_1: malformed JSON/);
    expect(() => scan('[1,2]')).toThrow(/not a JSON object/);
  });

  it('sizes unpadded and padded base64 exactly', () => {
    for (const n of [0, 1, 2, 3, 4, 5, 1000]) {
      const url = `data:image/png;base64,${b64(Buffer.alloc(n, 3))}`;
      const spans = findAttachments(Buffer.from(JSON.stringify({ url })), 'p');
      expect(spans[0]?.decodedBytes).toBe(n);
    }
  });

  it('reads the mime of a percent-encoded data URL and marks it as not base64', () => {
    const spans = findAttachments(Buffer.from(JSON.stringify({ url: 'data:text/plain;charset=utf-8,hello%20world' })), 'p');
    expect(spans[0]).toMatchObject({ mime: 'text/plain', base64: false });
  });
});

describe('attachment refs', () => {
  it('round-trip', () => {
    expect(parseAttachmentRef(attachmentRefName('prt_abc', 0))).toEqual({ partId: 'prt_abc', index: 0 });
    expect(parseAttachmentRef(attachmentRefName('prt_abc', 3))).toEqual({ partId: 'prt_abc', index: 3 });
  });
  it('refuse anything that is not a ref', () => {
    expect(() => parseAttachmentRef('../etc/passwd')).toThrow(/not an attachment reference/);
    expect(() => parseAttachmentRef('prt_1.x')).toThrow(/not an attachment reference/);
  });
});
