/**
 * The open attachment files the utility holds, beside its page cache: an LRU of FileHandles by
 * content (sha256), bounded in count and closed when idle, so a page of a hundred attachments never
 * holds more than a few descriptors. A handle in use by a stream is leased: evicting it only marks
 * it, and the last lease to be released closes it.
 */
import type { FileHandle } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';

export interface HandleLease {
  readonly handle: FileHandle;
  /** Bytes of the file (its size when it was adopted: entries are content-addressed, never rewritten). */
  readonly size: number;
  /** Gives the lease back; the handle closes now if it was evicted meanwhile. Safe to call twice. */
  release(): void;
}

export interface HandleCacheOptions {
  /** Handles kept open when unused; default 8. */
  max?: number;
  /** An unused handle closes after this long; default 60 s. */
  idleMs?: number;
}

class Entry {
  leases = 0;
  evicted = false;
  private closed = false;

  constructor(
    readonly handle: FileHandle,
    readonly size: number,
    private readonly onClose: () => void,
  ) {}

  evict(): void {
    this.evicted = true;
    if (this.leases === 0) this.close();
  }

  lease(): HandleLease {
    this.leases++;
    let released = false;
    return {
      handle: this.handle,
      size: this.size,
      release: () => {
        if (released) return;
        released = true;
        this.leases--;
        if (this.evicted && this.leases === 0) this.close();
      },
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    void this.handle.close().catch(() => undefined);
  }
}

export class AttachmentHandles {
  private readonly entries: LRUCache<string, Entry>;
  /** Handles open right now: cached ones and evicted ones still leased. */
  private openCount = 0;

  constructor(options: HandleCacheOptions = {}) {
    this.entries = new LRUCache<string, Entry>({
      max: Math.max(1, options.max ?? 8),
      ttl: options.idleMs ?? 60_000,
      ttlAutopurge: true,
      updateAgeOnGet: true,
      dispose: (entry) => entry.evict(),
    });
  }

  /** Takes ownership of `handle`, the open file holding content `sha256`; one held before is let go. */
  adopt(sha256: string, handle: FileHandle, size: number): void {
    this.openCount++;
    this.entries.set(sha256, new Entry(handle, size, () => this.openCount--));
  }

  has(sha256: string): boolean {
    return this.entries.has(sha256);
  }

  /** A lease on the handle of `sha256`, when one is held. */
  lease(sha256: string): HandleLease | undefined {
    return this.entries.get(sha256)?.lease();
  }

  /** Descriptors open now (for health and tests). */
  get open(): number {
    return this.openCount;
  }

  /** Lets every handle go: unused ones close now, leased ones when their lease ends. */
  clear(): void {
    this.entries.clear();
  }
}
