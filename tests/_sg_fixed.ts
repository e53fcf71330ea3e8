/**
 * The subgroup-kernel knobs that WGSL-level tests and probes start their configurations from
 * (`SgConfig` less the shape and dtypes): `tests/merge_form_test.ts`,
 * `bench/probes/wgsl_snapshot.ts` (whose hashes depend on these values: change them and the
 * snapshots no longer compare with older ones).
 */
export const SG_FIXED = Object.freeze({
  wg: 256,
  U: 1,
  nsMax: 8,
  pf: false,
  bf: true,
  rot: false,
  G: 1,
  tile: 0,
  tm: false,
  lz: false,
  fm: false,
});
