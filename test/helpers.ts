/** Deterministic random values in ±[0.05, 1): never zero, so no product vanishes by accident. */
export function randomNonZero(n: number, seed: number, scale = 1): Float32Array {
  let state = seed >>> 0 || 1;
  const next = (): number => {
    // xorshift32: small, seeded, good enough for test inputs
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (next() < 0.5 ? -1 : 1) * (0.05 + 0.95 * next()) * scale;
  return out;
}

/** ‖a − ref‖₂ / ‖ref‖₂ */
export function relativeError(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  if (a.length !== ref.length) return Infinity;
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < ref.length; i++) {
    diff += (a[i] - ref[i]) ** 2;
    norm += ref[i] ** 2;
  }
  return Math.sqrt(diff / (norm || 1));
}
