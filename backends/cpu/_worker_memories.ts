/**
 * The shared WebAssembly memories behind K/V (`KVStorage.memories`) go to each attention
 * Worker once, by number, not with every job.
 *
 * Posting a `WebAssembly.Memory` costs far more than posting its SharedArrayBuffer: each
 * message makes the receiving thread a new memory object (and its `memory.copy` instance
 * then misses its cache). With fifteen Workers that was 2–4 ms a call against 0.5 ms on the
 * development machine, and on a 16-core host the 16-thread calls had a median of 11–14 ms
 * against 2.5–4.7 ms for the same K/V in plain SharedArrayBuffers (bench/NOTES.md, "Session
 * 2026-12-06 (6)"). So the calling thread numbers each memory, sends it to a Worker the first
 * time that Worker needs it, and from then on only its number; once the memory is collected
 * here, the Workers are told to forget it.
 *
 * @module
 */
import type { KVStorage } from "./_kv_rows.ts";

type Memories = NonNullable<KVStorage["memories"]>;

/** `KVStorage.memories` as numbers (`-1`: the buffer is not in a WebAssembly memory). */
export interface MemoryIds {
  k: number[];
  v: number[];
}

/** What a job carries about memories: their numbers, and the ones this Worker lacks. */
export interface MemoryShipment {
  ids: MemoryIds;
  /** Memories this Worker has not been sent yet, with their numbers. */
  fresh?: [number, WebAssembly.Memory][];
}

let nextId = 0;
const ids = new WeakMap<WebAssembly.Memory, number>();
let forget: (id: number) => void = () => {};
const collected = new FinalizationRegistry<number>((id) => forget(id));

/**
 * Sets what happens when a numbered memory is collected on this thread: `tell(id)` (the pool
 * tells the Workers that were sent it to forget it).
 */
export function onMemoryCollected(tell: (id: number) => void): void {
  forget = tell;
}

function idOf(m: WebAssembly.Memory): number {
  let id = ids.get(m);
  if (id === undefined) {
    ids.set(m, id = nextId++);
    collected.register(m, id);
  }
  return id;
}

/**
 * The shipment of `memories` for a Worker that was sent the numbers in `held` before (which
 * this adds to).
 */
export function shipMemories(memories: Memories, held: Set<number>): MemoryShipment {
  const fresh: [number, WebAssembly.Memory][] = [];
  const number = (m: WebAssembly.Memory | undefined) => {
    if (!m) return -1;
    const id = idOf(m);
    if (!held.has(id)) {
      held.add(id);
      fresh.push([id, m]);
    }
    return id;
  };
  const shipment: MemoryShipment = {
    ids: { k: memories.k.map(number), v: memories.v.map(number) },
  };
  if (fresh.length > 0) shipment.fresh = fresh;
  return shipment;
}

/** A Worker's memories by number, as received. */
export class ReceivedMemories {
  #byId = new Map<number, WebAssembly.Memory>();

  /** The memories of a job's shipment (after keeping its fresh ones). */
  unpack(s: MemoryShipment): Memories {
    for (const [id, m] of s.fresh ?? []) this.#byId.set(id, m);
    const get = (id: number) => {
      if (id < 0) return undefined;
      const m = this.#byId.get(id);
      if (!m) throw new Error(`attention worker: memory ${id} was never sent (a bug)`);
      return m;
    };
    return { k: s.ids.k.map(get), v: s.ids.v.map(get) };
  }

  forget(id: number): void {
    this.#byId.delete(id);
  }

  /** How many memories this Worker holds (for tests). */
  get size(): number {
    return this.#byId.size;
  }
}
