import { ChaiError } from './errors';

export interface SamplingOptions {
  /** 0 = greedy (argmax, ties to the lowest id). Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = all). Default 40. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). Default 0.95. */
  topP?: number;
  /** Seed of the sampler's generator; the same seed gives the same tokens. Default: random. */
  seed?: number;
}

/** mulberry32: a tiny seeded generator, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export function validateSampling(o: SamplingOptions): Required<Omit<SamplingOptions, 'seed'>> & { seed: number } {
  const temperature = o.temperature ?? 0.8;
  const topK = o.topK ?? 40;
  const topP = o.topP ?? 0.95;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new ChaiError('E_INVALID_ARGUMENT', `temperature must be >= 0, got ${o.temperature}`);
  if (!Number.isInteger(topK) || topK < 0) throw new ChaiError('E_INVALID_ARGUMENT', `topK must be an integer >= 0, got ${o.topK}`);
  if (!(topP > 0 && topP <= 1)) throw new ChaiError('E_INVALID_ARGUMENT', `topP must be in (0, 1], got ${o.topP}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isInteger(seed)) throw new ChaiError('E_INVALID_ARGUMENT', `seed must be an integer, got ${o.seed}`);
  return { temperature, topK, topP, seed };
}

/** Picks the next token: greedy at temperature 0, else temperature → top-k → top-p → draw. */
export function sample(logits: Float32Array, o: { temperature: number; topK: number; topP: number }, random: () => number): number {
  if (o.temperature === 0) return argmax(logits);
  let ids = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK > 0) ids = ids.slice(0, o.topK);
  const max = logits[ids[0]];
  let probs = ids.map((id) => Math.exp((logits[id] - max) / o.temperature));
  let total = probs.reduce((s, p) => s + p, 0);
  if (o.topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < probs.length && cumulative < o.topP * total) cumulative += probs[keep++];
    ids = ids.slice(0, keep);
    probs = probs.slice(0, keep);
    total = cumulative;
  }
  let r = random() * total;
  for (let i = 0; i < ids.length; i++) {
    r -= probs[i];
    if (r < 0) return ids[i];
  }
  return ids[ids.length - 1];
}
