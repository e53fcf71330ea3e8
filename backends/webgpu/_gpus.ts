/**
 * Multiprocessor counts of known GPUs, by adapter description: the backend's `parallelism`
 * and the attention kernels' default grid both read this one table.
 */

/**
 * Streaming multiprocessors (or equivalents) of GPUs we know, by adapter description, and
 * where measured, the streaming-read bandwidth in GB/s (`deno task bench`'s ceiling on 2026-11-26:
 * H200 4.58–4.66 TB/s, H100 SXM 80GB HBM3 3.16–3.18 TB/s).
 */
const KNOWN_GPUS: readonly [RegExp, number, number?][] = [
  [/\bH100\b.*\bPCIe\b/i, 114],
  [/\bH100\b/i, 132, 3180],
  [/\bH200\b/i, 132, 4600],
  [/\bA100\b/i, 108],
  [/\bL4\b/i, 58],
  [/\bRTX 4090\b/i, 128],
];

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|software/i;

/** Multiprocessor count of an adapter description, and whether it is a known GPU. */
export function parallelismOf(description: string): { parallelism: number; known: boolean } {
  for (const [re, n] of KNOWN_GPUS) {
    if (re.test(description)) return { parallelism: n, known: true };
  }
  return { parallelism: SOFTWARE.test(description) ? 8 : 32, known: false };
}

/** Streaming-read bandwidth (GB/s) of a known GPU, where the table has one. */
export function bandwidthOf(description: string): number | undefined {
  for (const [re, , bw] of KNOWN_GPUS) if (re.test(description)) return bw;
  return undefined;
}

/** Whether an adapter description names a software rasteriser (lavapipe, SwiftShader, ...). */
export function isSoftwareAdapter(description: string): boolean {
  return SOFTWARE.test(description);
}
