import { biasLogits, sample, SamplingOptions, seededRandom, TokenSampler, topTokens, validateSampling } from '../lib/sampling';
import { StopStrings } from '../lib/stop-strings';
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

describe('penalties and min-p (TokenSampler)', () => {
  const logits = Float32Array.from([2, 2, -1, 0.5]);
  const adjusted = (options: SamplingOptions, sequence: number[], produced: number[] = []): number[] => {
    const sampler = new TokenSampler({ temperature: 0, ...options }, 4, sequence);
    // Each produced token is what greedy sampling of a logit vector peaked at it picks.
    for (const token of produced) sampler.next(Float32Array.from([0, 1, 2, 3], (i) => (i === token ? 100 : 0)));
    return Array.from(sampler.adjusted(logits));
  };

  test("repeatPenalty (llama.cpp's): divides positive and multiplies negative logits of the last repeatLastN tokens, prompt included, once each", () => {
    expect(adjusted({ repeatPenalty: 2 }, [0, 2, 2])).toEqual([1, 2, -2, 0.5]);
    expect(adjusted({ repeatPenalty: 2, repeatLastN: 1 }, [0, 2])).toEqual([2, 2, -2, 0.5]);
    expect(adjusted({ repeatPenalty: 2, repeatLastN: 0 }, [0, 2])).toEqual([2, 2, -1, 0.5]);
    expect(adjusted({ repeatPenalty: 2, repeatLastN: 2 }, [0], [3, 1])).toEqual([2, 1, -1, 0.25]);
  });

  test("frequency and presence penalties (OpenAI's): subtracted per time and once, over the generated tokens only", () => {
    expect(adjusted({ frequencyPenalty: 0.5, presencePenalty: 0.25 }, [0, 1, 2], [1, 1, 3])).toEqual([2, 2 - 1 - 0.25, -1, 0.5 - 0.5 - 0.25]);
    expect(adjusted({ frequencyPenalty: 0.5 }, [0, 1])).toEqual([2, 2, -1, 0.5]);
    expect(adjusted({ logitBias: { 2: 3 }, presencePenalty: 1 }, [], [2])).toEqual([2, 2, 1, 0.5]);
    expect(Array.from(logits)).toEqual([2, 2, -1, 0.5]); // the input is left alone
  });

  test('minP keeps the tokens at least minP times as likely as the most likely one', () => {
    const l = Float32Array.from([0, -1, -10, -0.5]);
    const seen = (minP: number): number[] => {
      const random = seededRandom(5);
      const ids = new Set<number>();
      for (let i = 0; i < 300; i++) ids.add(sample(l, { temperature: 1, topK: 0, topP: 1, minP }, random));
      return [...ids].sort();
    };
    expect(seen(0.1)).toEqual([0, 1, 3]); // e^-1 = 0.37 stays, e^-10 goes
    expect(seen(0.5)).toEqual([0, 3]);
    expect(seen(1)).toEqual([0]);
  });

  test('are checked: ranges, and errors name the option', () => {
    for (const [option, value] of [['frequencyPenalty', 3], ['presencePenalty', -2.5], ['minP', 1.5], ['repeatPenalty', 0], ['repeatLastN', -2], ['repeatLastN', 1.5]] as const) {
      expect(() => validateSampling({ [option]: value }, 5)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT', option }));
    }
  });
});

describe('stop strings', () => {
  test('hand out the text before the first stop string, holding back what may become one', () => {
    const stops = new StopStrings(['END', 'xy']);
    expect(stops.push('abc E')).toEqual({ text: 'abc ', stopped: false });
    expect(stops.push('N')).toEqual({ text: '', stopped: false });
    expect(stops.push('ough x')).toEqual({ text: 'ENough ', stopped: false });
    expect(stops.push('yz')).toEqual({ text: '', stopped: true });
    const open = new StopStrings(['END']);
    expect(open.push('the EN')).toEqual({ text: 'the ', stopped: false });
    expect(open.flush()).toBe('EN');
    expect(() => new StopStrings('END' as unknown as string[])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT', option: 'stop' }));
  });
});
