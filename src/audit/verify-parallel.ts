// Verifying a large log on all cores. The records are cut into chunks of 2^16
// aligned on multiples of 2^16, so each chunk is a perfect subtree (the last
// may be partial): worker threads hash their chunks independently and return
// the chunk's subtree roots (and the compact range at any checkpoint size inside
// it); the main thread joins them in order. The caller compares the roots with
// the checkpoints and the tree head; a gap here, or any mismatch there, sends it
// back to the sequential scan, which reports exactly where and what.
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { CompactRange, HASH_SIZE } from "./merkle.js";
import type { TreeScan } from "./verify.js";

export const CHUNK_HEIGHT = 16;
export const CHUNK = 2 ** CHUNK_HEIGHT;
/** Below this many records a thread pool costs more than it saves. */
export const PARALLEL_THRESHOLD = 4 * CHUNK;

export interface ChunkRequest {
  dir: string;
  index: number;
  from: number;
  to: number;
  /** Sizes (absolute, in (from, to]) at which the chunk's compact range is wanted. */
  sizes: number[];
}

export interface ChunkReply {
  index: number;
  /** False when anything was wrong (gap, edited, misplaced record): fall back to the sequential scan. */
  clean: boolean;
  count: number;
  /** The chunk's compact range at its end, packed. */
  nodes: Uint8Array;
  /** [size, packed compact range of [from, size)]. */
  at: [number, Uint8Array][];
}

export const unpack = (u: Uint8Array): Buffer[] => {
  const b = Buffer.from(u.buffer, u.byteOffset, u.byteLength);
  const out: Buffer[] = [];
  for (let i = 0; i < b.length; i += HASH_SIZE) out.push(b.subarray(i, i + HASH_SIZE));
  return out;
};

export async function scanParallel(
  dir: string,
  total: number,
  sizes: Set<number>,
  chunkHeight = CHUNK_HEIGHT,
): Promise<TreeScan | null> {
  const CHUNK = 2 ** chunkHeight;
  const chunks = Math.ceil(total / CHUNK);
  const threads = Math.max(1, Math.min(availableParallelism(), 4, chunks));
  const workers = Array.from({ length: threads }, () => new Worker(new URL("./verify-worker.js", import.meta.url)));
  const replies = new Map<number, ChunkReply>();
  let next = 0;
  try {
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve, reject) => {
            const send = () => {
              if (next >= chunks) {
                resolve();
                return;
              }
              const index = next++;
              const from = index * CHUNK;
              const to = Math.min(total, from + CHUNK);
              const within = [...sizes].filter((s) => s > from && s <= to);
              w.postMessage({ dir, index, from, to, sizes: within } satisfies ChunkRequest);
            };
            w.on("message", (r: ChunkReply) => {
              replies.set(r.index, r);
              send();
            });
            w.on("error", reject);
            send();
          }),
      ),
    );
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  const range = CompactRange.empty();
  const rootsAt = new Map<number, Buffer>();
  if (sizes.has(0)) rootsAt.set(0, range.root());
  for (let i = 0; i < chunks; i++) {
    const r = replies.get(i);
    if (!r?.clean || r.count !== Math.min(CHUNK, total - i * CHUNK)) return null;
    for (const [size, packed] of r.at) rootsAt.set(size, range.rootWith(unpack(packed)));
    const nodes = unpack(r.nodes);
    if (r.count === CHUNK) range.appendSubtree(nodes[0] as Buffer, chunkHeight);
    else {
      // The last, partial chunk: its subtrees follow the full ones.
      const root = range.rootWith(nodes);
      return { size: range.size + r.count, root, rootsAt, problems: [] };
    }
  }
  return { size: range.size, root: range.root(), rootsAt, problems: [] };
}
