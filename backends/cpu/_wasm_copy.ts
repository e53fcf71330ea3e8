/**
 * Bulk copies out of CPU storage held in shared WebAssembly memory (`_storage.ts`) into a
 * kernel's scratch memory: WebAssembly's `memory.copy` between two memories (multi-memory)
 * runs at `memcpy` speed, where `TypedArray.prototype.set` from a SharedArrayBuffer copies
 * with relaxed atomic accesses, 35 % slower (bench/NOTES.md, "Session 2026-12-06 (5)").
 *
 * @module
 */
import { get, memoryImport, name, section, uleb, wasmModule } from "./_wasm_encoding.ts";

/** Copies `bytes` bytes from byte `from` of the source memory to byte `to` of the target. */
export type MemoryCopy = (to: number, from: number, bytes: number) => void;

/** The module: imports the target (memory 0, unshared) and the source (memory 1, shared). */
function copyModuleBytes(): Uint8Array<ArrayBuffer> {
  // memory.copy 0 1 (0xfc 10 dst src): (to, from, bytes).
  const code = [0, ...get(0), ...get(1), ...get(2), 0xfc, ...uleb(10), 0, 1, 0x0b];
  return wasmModule(
    section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]),
    section(2, [2, ...memoryImport("m", "to", false), ...memoryImport("m", "from", true)]),
    section(3, [1, 0]),
    section(7, [1, ...name("copy"), 0x00, 0]),
    section(10, [1, ...uleb(code.length), ...code]),
  );
}

let module: WebAssembly.Module | null | undefined;
const copiers = new WeakMap<WebAssembly.Memory, WeakMap<WebAssembly.Memory, MemoryCopy>>();

/**
 * A copy from `from` (shared) into `to`, or null where the engine lacks multi-memory (then the
 * caller copies with typed arrays). Instances are kept per pair of memories.
 */
export function memoryCopy(to: WebAssembly.Memory, from: WebAssembly.Memory): MemoryCopy | null {
  if (module === undefined) {
    try {
      module = new WebAssembly.Module(copyModuleBytes());
    } catch {
      module = null;
    }
  }
  if (module === null) return null;
  let bySource = copiers.get(to);
  if (!bySource) copiers.set(to, bySource = new WeakMap());
  let copy = bySource.get(from);
  if (!copy) {
    const inst = new WebAssembly.Instance(module, { m: { to, from } });
    copy = inst.exports.copy as MemoryCopy;
    bySource.set(from, copy);
  }
  return copy;
}
