import { ChaiError, invalidOption } from './errors';
import type { LogitMask } from './structured/token-mask';

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
  /** Drop tokens less likely than minP times the most likely one (after temperature), in [0, 1]. Default 0 (off). */
  minP?: number;
  /** OpenAI's: subtracted from a token's logit for each time this generation produced it, in [-2, 2]. Default 0. */
  frequencyPenalty?: number;
  /** OpenAI's: subtracted from a token's logit once this generation has produced it, in [-2, 2]. Default 0. */
  presencePenalty?: number;
  /**
   * llama.cpp's: the logits of the tokens among the last repeatLastN of the sequence (prompt
   * included) are divided by this where positive, multiplied where negative; > 0. Default 1 (off).
   */
  repeatPenalty?: number;
  /** How many of the latest tokens repeatPenalty looks at: -1 = the whole sequence, 0 = none. Default 64, as llama.cpp. */
  repeatLastN?: number;
}

/** SamplingOptions checked, with their defaults filled in. */
export type ValidSampling = Required<Omit<SamplingOptions, 'logitBias'>> & Pick<SamplingOptions, 'logitBias'>;

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

function inRange(o: SamplingOptions, option: 'minP' | 'frequencyPenalty' | 'presencePenalty', low: number, high: number, fallback: number): number {
  const value = o[option] ?? fallback;
  if (typeof value !== 'number' || !(value >= low && value <= high)) throw invalidOption(option, `must be a number in [${low}, ${high}], got ${String(o[option])}`);
  return value;
}

/** Checks the options once per generation (logitBias ids against `vocabSize`); sampling each token then trusts them. */
export function validateSampling(o: SamplingOptions, vocabSize: number): ValidSampling {
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
  const repeatPenalty = o.repeatPenalty ?? 1;
  if (typeof repeatPenalty !== 'number' || !(repeatPenalty > 0) || !Number.isFinite(repeatPenalty)) throw invalidOption('repeatPenalty', `must be a number > 0 (1 = off), got ${String(o.repeatPenalty)}`);
  const repeatLastN = o.repeatLastN ?? 64;
  if (!Number.isInteger(repeatLastN) || repeatLastN < -1) throw invalidOption('repeatLastN', `must be an integer >= -1 (-1: the whole sequence), got ${String(o.repeatLastN)}`);
  return {
    temperature,
    topK,
    topP,
    seed,
    logitBias: o.logitBias,
    minP: inRange(o, 'minP', 0, 1, 0),
    frequencyPenalty: inRange(o, 'frequencyPenalty', -2, 2, 0),
    presencePenalty: inRange(o, 'presencePenalty', -2, 2, 0),
    repeatPenalty,
    repeatLastN,
  };
}

/**
 * The sampler of one generation: its options (checked once), its seeded generator, and what the
 * penalties look at: the sequence so far (for repeatPenalty) and the tokens this generation
 * produced (for the frequency and presence penalties). Sessions and the server use it alike.
 */
export class TokenSampler {
  private readonly options: ValidSampling;
  private readonly random: () => number;
  /** The latest tokens of the sequence, at most repeatLastN of them (all with -1). */
  private readonly recent: number[];
  /** Times each token was produced by this generation. */
  private readonly produced = new Map<number, number>();

  /** `sequence`: the tokens before the first one sampled, the prompt included. */
  constructor(options: SamplingOptions, vocabSize: number, sequence: readonly number[]) {
    this.options = validateSampling(options, vocabSize);
    this.random = seededRandom(this.options.seed);
    this.recent = [];
    for (const token of sequence) this.remember(token);
  }

  /**
   * Samples the next token from the logits (a copy is adjusted; the input is left alone) and records
   * it. `mask`: only the tokens it leaves finite may be drawn (structured output).
   */
  next(logits: Float32Array, mask?: LogitMask): number {
    let adjusted = this.adjusted(logits);
    if (mask) {
      if (adjusted === logits) adjusted = Float32Array.from(logits);
      mask.apply(adjusted);
    }
    const token = sample(adjusted, this.options, this.random);
    this.produced.set(token, (this.produced.get(token) ?? 0) + 1);
    this.remember(token);
    return token;
  }

  /** The logits as sampling sees them: logit bias, then the repeat, frequency and presence penalties. */
  adjusted(logits: Float32Array): Float32Array {
    const o = this.options;
    const penalize = o.repeatPenalty !== 1 && this.recent.length > 0;
    const count = o.frequencyPenalty !== 0 || o.presencePenalty !== 0 ? this.produced : null;
    if (!penalize && (count === null || count.size === 0)) return biasLogits(logits, o.logitBias);
    const out = o.logitBias ? biasLogits(logits, o.logitBias) : Float32Array.from(logits);
    if (penalize) {
      for (const token of new Set(this.recent)) out[token] = out[token] > 0 ? out[token] / o.repeatPenalty : out[token] * o.repeatPenalty;
    }
    for (const [token, n] of count ?? []) out[token] -= n * o.frequencyPenalty + o.presencePenalty;
    return out;
  }

  private remember(token: number): void {
    const keep = this.options.repeatLastN;
    if (keep === 0) return;
    this.recent.push(token);
    if (keep > 0 && this.recent.length > keep) this.recent.shift();
  }
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

/** Picks the next token: greedy at temperature 0, else temperature → top-k → top-p → min-p → draw. */
export function sample(logits: Float32Array, o: { temperature: number; topK: number; topP: number; minP?: number }, random: () => number): number {
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
  if (o.minP) {
    // probs are sorted, most likely first: the first one less likely than minP times it ends the list.
    const floor = o.minP * probs[0];
    const end = probs.findIndex((p) => p < floor);
    if (end > 0) {
      ids = ids.slice(0, end);
      probs = probs.slice(0, end);
      total = probs.reduce((sum, p) => sum + p, 0);
    }
  }
  let r = random() * total;
  for (let i = 0; i < ids.length; i++) {
    r -= probs[i];
    if (r < 0) return ids[i];
  }
  return ids[ids.length - 1];
}
