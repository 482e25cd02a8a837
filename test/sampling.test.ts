import { biasLogits, sample, seededRandom, topTokens, validateSampling } from '../lib/sampling';
describe('sampling', () => {
  test('topTokens equals sorting the whole vocabulary, ties to the lower id', () => {
    let seed = 9;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (const n of [1, 5, 100, 1000]) {
      // Few distinct values, so ties are everywhere.
      const logits = Float32Array.from({ length: n }, () => Math.floor(random() * 20) / 4);
      const sorted = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
      for (const k of [0, 1, 3, 40, n, n + 5]) expect(topTokens(logits, k)).toEqual(k <= 0 || k >= n ? sorted : sorted.slice(0, k));
    }
  });

  test('sample: greedy at temperature 0; draws only inside top-k and top-p', () => {
    const logits = Float32Array.from([0, 5, 4.9, -3, 1]);
    expect(sample(logits, { temperature: 0, topK: 0, topP: 1 }, seededRandom(1))).toBe(1);
    const random = seededRandom(3);
    const seen = new Set<number>();
    for (let i = 0; i < 500; i++) seen.add(sample(logits, { temperature: 1, topK: 2, topP: 1 }, random));
    expect([...seen].sort()).toEqual([1, 2]);
    seen.clear();
    // p(1) ≈ 0.50 of everything: top-p 0.3 keeps token 1 alone.
    for (let i = 0; i < 200; i++) seen.add(sample(logits, { temperature: 1, topK: 0, topP: 0.3 }, random));
    expect([...seen]).toEqual([1]);
  });
});

describe('logitBias', () => {
  test('is checked once against the vocabulary, then added to a copy of the logits', () => {
    expect(() => validateSampling({ logitBias: { 5: 1 } }, 5)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT', option: 'logitBias' }));
    expect(() => validateSampling({ logitBias: { 1.5: 1 } }, 5)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => validateSampling({ logitBias: { 2: NaN } }, 5)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => validateSampling({ logitBias: { 4: -100 } }, 5)).not.toThrow();
    const logits = Float32Array.from([0.5, 1, 2, 3, 4]);
    expect(Array.from(biasLogits(logits, { 4: -100, 0: 1 }))).toEqual([1.5, 1, 2, 3, -96]);
    expect(Array.from(logits)).toEqual([0.5, 1, 2, 3, 4]);
  });
});
