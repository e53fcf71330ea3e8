/**
 * The shapes of scijs ndarrays the library reads and returns, declared here so the public
 * API (and `Tensor`) does not depend on the package's type definitions.
 *
 * @module
 */

/**
 * What {@link fromNdarray} reads of an ndarray: element `(i0, i1, ...)` is
 * `data[offset + Σ i_d · stride_d]`. Any scijs ndarray (or look-alike) fits.
 */
export interface NdArrayLike {
  /** Element storage: an array-like, or an object with `get(index)`. */
  readonly data: ArrayLike<number> | { get(index: number): number };
  /** Dimensions. */
  readonly shape: readonly number[];
  /** Elements to skip per step along each dimension (may be negative). */
  readonly stride: readonly number[];
  /** Index of element `(0, 0, ...)` in `data`. */
  readonly offset: number;
}

/**
 * A scijs ndarray as returned by {@link toNdarray} (declared here so the public API does not
 * depend on the package's type definitions).
 */
export interface NdArray<D extends ArrayLike<number> = Float32Array> extends NdArrayLike {
  /** Element storage. */
  readonly data: D;
  /** Dimensions. */
  readonly shape: number[];
  /** Strides, in elements. */
  readonly stride: number[];
  /** Index of element `(0, 0, ...)` in `data`. */
  readonly offset: number;
  /** Number of elements. */
  readonly size: number;
  /** Number of dimensions. */
  readonly dimension: number;
  /** The element at the given indices. */
  get(...indices: number[]): number;
  /** Sets the element at the given indices (the last argument is the value). */
  set(...indicesThenValue: number[]): number;
  /** The storage index of the element at the given indices. */
  index(...indices: number[]): number;
  /** A view starting at the given indices. */
  lo(...indices: number[]): NdArray<D>;
  /** A view ending before the given indices. */
  hi(...indices: number[]): NdArray<D>;
  /** A view taking every n-th element per dimension (negative: reversed). */
  step(...steps: number[]): NdArray<D>;
  /** A view with permuted axes. */
  transpose(...axes: number[]): NdArray<D>;
  /** A view with the given dimensions fixed (`null` keeps one). */
  pick(...indices: (number | null)[]): NdArray<D>;
}
