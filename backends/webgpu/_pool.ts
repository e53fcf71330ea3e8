/**
 * A pool of GPU buffers keyed by size class. Creating a GPU buffer costs a driver allocation
 * (and zero-fills it); a loop of ops that each make and drop a tensor would otherwise allocate
 * on every step. Sizes are rounded up to classes a quarter-octave apart, so a reused buffer
 * wastes at most a quarter of its bytes and nearby sizes share buffers.
 *
 * All pooled buffers share one usage set, so any free buffer of a class serves any request.
 *
 * @module
 */

/** Usage of every pooled buffer: storage, uniform and both copy directions. */
export const POOL_USAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.UNIFORM |
  GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/**
 * The size class of a byte count: at least 16, a multiple of 16, and at most a quarter more
 * than `bytes` above 64 bytes (classes are 2^k·{1, 1.25, 1.5, 1.75}).
 */
export function sizeClass(bytes: number): number {
  if (bytes <= 64) return Math.max(16, Math.ceil(bytes / 16) * 16);
  const p = 2 ** Math.floor(Math.log2(bytes - 1));
  const step = p / 4;
  return Math.ceil(bytes / step) * step;
}

/** Free buffers by exact size, with a cap on the bytes kept idle. */
export class BufferPool {
  #free = new Map<number, GPUBuffer[]>();
  #bytes = 0;

  /** @param capBytes idle bytes above which released buffers are destroyed instead. */
  constructor(readonly capBytes: number) {}

  /** Bytes of idle buffers. */
  get pooledBytes(): number {
    return this.#bytes;
  }

  /** An idle buffer of exactly `size` bytes, or undefined. */
  take(size: number): GPUBuffer | undefined {
    const list = this.#free.get(size);
    const b = list?.pop();
    if (b) this.#bytes -= size;
    return b;
  }

  /** Keeps `buffer` for reuse (or destroys it when the pool is full). */
  give(buffer: GPUBuffer): void {
    if (this.#bytes + buffer.size > this.capBytes) {
      buffer.destroy();
      return;
    }
    let list = this.#free.get(buffer.size);
    if (!list) this.#free.set(buffer.size, list = []);
    list.push(buffer);
    this.#bytes += buffer.size;
  }

  /** Destroys every idle buffer. */
  clear(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
    this.#bytes = 0;
  }
}
