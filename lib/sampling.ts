import { ChaiError, invalidOption } from './errors';

export interface SamplingOptions {
  /** 0 = greedy (argmax, ties to the lowest id). Default 0.8. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = all). Default 40. */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = all). Default 0.95. */
  topP?: number;
  /** Seed of the sampler's generator, an integer in [0, 2**32); the same seed gives the same tokens. Default: random. */
  seed?: number;
  /** Added to the logits of these token ids before sampling (OpenAI's logit_bias; -Infinity bans a token). */
  logitBias?: Readonly<Record<number, number>>;
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

/** Checks the options once per generation (logitBias ids against `vocabSize`); sampling each token then trusts them. */
export function validateSampling(o: SamplingOptions, vocabSize: number): Required<Omit<SamplingOptions, 'seed' | 'logitBias'>> & { seed: number } {
  const temperature = o.temperature ?? 0.8;
  const topK = o.topK ?? 40;
  const topP = o.topP ?? 0.95;
  if (typeof temperature !== 'number' || !(temperature >= 0) || !Number.isFinite(temperature)) throw invalidOption('temperature', `must be a number >= 0, got ${String(o.temperature)}`);
  if (!Number.isInteger(topK) || topK < 0) throw invalidOption('topK', `must be an integer >= 0, got ${String(o.topK)}`);
  if (typeof topP !== 'number' || !(topP > 0 && topP <= 1)) throw invalidOption('topP', `must be in (0, 1], got ${String(o.topP)}`);
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  // The generator's state is 32 bits: larger seeds would be truncated and collide with small ones.
  if (!Number.isInteger(seed) || seed < 0 || seed >= 2 ** 32) throw invalidOption('seed', `must be an integer in [0, 2**32), got ${String(o.seed)}`);
  for (const [key, value] of Object.entries(o.logitBias ?? {})) {
    const id = Number(key);
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidOption('logitBias', `names token ${key}, outside the vocabulary (0..${vocabSize - 1})`);
    }
    if (typeof value !== 'number' || Number.isNaN(value)) throw invalidOption('logitBias', `for token ${key} must be a number`);
  }
  return { temperature, topK, topP, seed };
}

/** The logits with `bias` added (a copy; the input is left alone); validateSampling checked the ids. */
export function biasLogits(logits: Float32Array, bias: Readonly<Record<number, number>> | undefined): Float32Array {
  if (bias === undefined) return logits;
  const out = Float32Array.from(logits);
  for (const [key, value] of Object.entries(bias)) out[Number(key)] += value;
  return out;
}

/**
 * The k most likely token ids, most likely first (ties: lower id first), in O(V log k) with a
 * bounded min-heap rather than sorting the whole vocabulary every token. k <= 0 sorts everything.
 */
export function topTokens(logits: Float32Array, k: number): number[] {
  const before = (a: number, b: number): boolean => logits[a] > logits[b] || (logits[a] === logits[b] && a < b);
  if (k <= 0 || k >= logits.length) return Array.from(logits.keys()).sort((a, b) => (before(a, b) ? -1 : 1));
  const heap: number[] = []; // heap[0]: the least likely of the k kept so far
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let worst = i;
      if (l < heap.length && before(heap[worst], heap[l])) worst = l;
      if (r < heap.length && before(heap[worst], heap[r])) worst = r;
      if (worst === i) return;
      [heap[i], heap[worst]] = [heap[worst], heap[i]];
      i = worst;
    }
  };
  for (let id = 0; id < logits.length; id++) {
    if (heap.length < k) {
      heap.push(id);
      for (let i = heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!before(heap[parent], heap[i])) break;
        [heap[i], heap[parent]] = [heap[parent], heap[i]];
        i = parent;
      }
    } else if (before(id, heap[0])) {
      heap[0] = id;
      down(0);
    }
  }
  return heap.sort((a, b) => (before(a, b) ? -1 : 1));
}

/** NaN or +∞ anywhere (or nothing above −∞) leaves no distribution to sample from. */
function checkFinite(logits: Float32Array): void {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i];
    if (Number.isNaN(v) || v === Infinity) {
      throw new ChaiError('E_NON_FINITE', `the model computed a ${v} logit (token ${i}): its weights are corrupt or overflow; check the model file`);
    }
    if (v > max) max = v;
  }
  if (max === -Infinity) throw new ChaiError('E_NON_FINITE', 'every logit is -Infinity: the model gives no token any probability; check the model file');
}

/** Picks the next token: greedy at temperature 0, else temperature → top-k → top-p → draw. */
export function sample(logits: Float32Array, o: { temperature: number; topK: number; topP: number }, random: () => number): number {
  checkFinite(logits);
  if (o.temperature === 0) return argmax(logits);
  let ids = topTokens(logits, o.topK);
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
