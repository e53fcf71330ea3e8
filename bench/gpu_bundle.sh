#!/usr/bin/env bash
# Builds `.gpu/` for the offline GPU host (`run` with carry [".gpu"], 64 MiB at most): the
# workplace's ../shared/gpu/bundle.sh (pinned Deno, Vulkan loader, Deno's npm cache), then keeps
# only the Linux x86-64 binaries of onnxruntime-node (the CPU bench's peer), whose Windows,
# macOS and Linux arm64 builds would take the bundle to ~115 MiB (~50 MiB without them).
# Run from the project root: `bash bench/gpu_bundle.sh [ENTRYPOINT ...]`.
set -euo pipefail
# Default entries: the library, the bench, its probes and the tests (fast-check and the other
# test-only packages must be in the cache: the host is offline).
if [ $# -eq 0 ]; then set -- mod.ts bench/*.ts bench/probes/*.ts tests/*.ts; fi
bash ../shared/gpu/bundle.sh "$@" > /dev/null
dd=$(mktemp -d)
xz -dc .gpu/deno_dir.tar.xz | tar -C "$dd" -xf -
for b in "$dd"/npm/registry.npmjs.org/onnxruntime-node/*/bin/napi-v*; do
  [ -d "$b" ] || continue
  find "$b" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
  find "$b/linux" -mindepth 1 -maxdepth 1 ! -name x64 -exec rm -rf {} +
done
tar -C "$dd" -cf - . | xz -T0 -6 > .gpu/deno_dir.tar.xz
rm -rf "$dd"
du -sh .gpu | awk '{print "bundle size: " $1}'
