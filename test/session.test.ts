import path from 'node:path';
import { ChaiError, GenerationResult, loadModel, Model } from '../lib';

const MODEL = path.join(__dirname, '..', '..', 'shared', 'models', 'stories260K.gguf');

/** Runs a generation to its end; the texts it streamed go to `pieces`. */
async function drain(stream: AsyncGenerator<{ text: string }, GenerationResult>, pieces: string[] = []): Promise<GenerationResult> {
  for (;;) {
    const step = await stream.next();
    if (step.done) return step.value;
    pieces.push(step.value.text);
  }
}

describe('sessions', () => {
  let model: Model;
  beforeAll(async () => {
    const stages: string[] = [];
    model = await loadModel(MODEL, { device: 'auto', onProgress: (p) => stages.push(p.stage) });
    expect(stages).toEqual(['opening', 'ready']);
  });
  afterAll(() => model.dispose());

  test('model.info describes the architecture', () => {
    expect(model.device).toBe('cpu');
    expect(model.info).toMatchObject({ architecture: 'llama', layers: 5, heads: 8, kvHeads: 4, headDim: 8, vocabSize: 512, tiedOutput: false });
    expect(model.info.tensorTypes).toEqual({ F32: 48 });
  });

  test('penalties: greedy generation equals a reference loop that applies both formulas to the logits by hand', async () => {
    const options = { frequencyPenalty: 0.8, presencePenalty: 0.3, repeatPenalty: 1.3, repeatLastN: 16 };
    const prompt = model.tokenizer.encode('Once upon a time', { addBos: true });
    const reference = model.createSession({ maxTokens: 128 });
    let logits = await reference.evaluate(prompt);
    const produced: number[] = [];
    for (let i = 0; i < 40; i++) {
      const l = Array.from(logits);
      const recent = [...prompt, ...produced].slice(-options.repeatLastN);
      for (const t of new Set(recent)) l[t] = l[t] > 0 ? l[t] / options.repeatPenalty : l[t] * options.repeatPenalty;
      for (const t of new Set(produced)) l[t] -= produced.filter((p) => p === t).length * options.frequencyPenalty + options.presencePenalty;
      const next = l.indexOf(Math.max(...l));
      produced.push(next);
      logits = await reference.evaluate([next]);
    }
    await reference.dispose();
    const session = model.createSession({ maxTokens: 128 });
    const result = await drain(session.generate(prompt, { temperature: 0, maxNewTokens: 40, ...options }));
    expect(result.tokens).toEqual(produced);
    await session.reset();
    const plain = await drain(session.generate(prompt, { temperature: 0, maxNewTokens: 40 }));
    expect(plain.tokens).not.toEqual(produced); // the penalties did change the text
    await session.dispose();
  });

  test('stop strings end the text before the first one (finishReason stopString)', async () => {
    const session = model.createSession({ maxTokens: 128 });
    const whole = await drain(session.generate('Once upon a time', { temperature: 0, maxNewTokens: 40 }));
    const at = whole.text.indexOf('Lily');
    expect(at).toBeGreaterThan(0);
    await session.reset();
    const pieces: string[] = [];
    const stopped = await drain(session.generate('Once upon a time', { temperature: 0, maxNewTokens: 40, stop: ['Lily', 'zzz'] }), pieces);
    expect(stopped.text).toBe(whole.text.slice(0, at));
    expect(pieces.join('')).toBe(stopped.text);
    expect(stopped.finishReason).toBe('stopString');
    await session.dispose();
  });

  test('generate streams tokens whose texts add up to the result', async () => {
    const session = model.createSession({ maxTokens: 64 });
    const stream = session.generate('Once upon a time', { temperature: 0, maxNewTokens: 10 });
    const pieces: string[] = [];
    let step = await stream.next();
    while (!step.done) {
      pieces.push(step.value.text);
      step = await stream.next();
    }
    expect(step.value.tokens).toHaveLength(10);
    expect(step.value.text).toBe(pieces.join(''));
    expect(step.value.finishReason).toBe('maxNewTokens');
    expect(session.tokens).toHaveLength(5 + 9); // the 10th token is sampled but not yet evaluated
    await session.dispose();
  });

  test('the same seed gives the same sample; another seed usually differs', async () => {
    const run = async (seed: number) => {
      const s = model.createSession({ maxTokens: 64 });
      const out: number[] = [];
      for await (const t of s.generate('Tom had a', { temperature: 1, topK: 0, topP: 1, seed, maxNewTokens: 20 })) out.push(t.token);
      await s.dispose();
      return out;
    };
    const a = await run(7);
    expect(await run(7)).toEqual(a);
    const others = await Promise.all([1, 2, 3].map(run));
    expect(others.some((o) => JSON.stringify(o) !== JSON.stringify(a))).toBe(true);
  });

  test('an AbortSignal stops generation between tokens', async () => {
    const session = model.createSession({ maxTokens: 128 });
    const controller = new AbortController();
    const got: number[] = [];
    await expect(
      (async () => {
        for await (const t of session.generate('Once upon a time', { temperature: 0, maxNewTokens: 50, signal: controller.signal })) {
          got.push(t.token);
          if (got.length === 3) controller.abort();
        }
      })(),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(got).toHaveLength(3);
    await session.dispose();
  });

  test('evaluate returns all positions on request, and prefill equals step-by-step decoding', async () => {
    const tokens = [1, 403, 407, 261, 378, 432];
    const a = model.createSession({ maxTokens: 16 });
    const all = await a.evaluate(tokens, { allLogits: true });
    expect(all).toHaveLength(tokens.length * 512);
    const b = model.createSession({ maxTokens: 16 });
    for (let i = 0; i < tokens.length; i++) {
      const row = await b.evaluate([tokens[i]]);
      expect(Array.from(row)).toEqual(Array.from(all.subarray(i * 512, (i + 1) * 512)));
    }
    await a.dispose();
    await b.dispose();
  });

  test('concurrent calls on one session are serialised', async () => {
    const s = model.createSession({ maxTokens: 16 });
    const [x, y] = await Promise.all([s.evaluate([1, 403]), s.evaluate([407])]);
    expect(x).toHaveLength(512);
    expect(y).toHaveLength(512);
    expect(s.tokens).toEqual([1, 403, 407]);
    await s.dispose();
  });

  test('sessions running at once are batched and give what each gives alone', async () => {
    const prompts = ['Once upon a time', 'Tom had a big red ball.', 'The sun', 'Hi'];
    const alone: number[][] = [];
    for (const p of prompts) {
      const s = model.createSession({ maxTokens: 64 });
      const out: number[] = [];
      for await (const t of s.generate(p, { temperature: 0, maxNewTokens: 12 })) out.push(t.token);
      alone.push(out);
      await s.dispose();
    }
    const sessions = prompts.map(() => model.createSession({ maxTokens: 64 }));
    const together = await Promise.all(
      sessions.map(async (s, i) => {
        const out: number[] = [];
        for await (const t of s.generate(prompts[i], { temperature: 0, maxNewTokens: 12 })) out.push(t.token);
        return out;
      }),
    );
    expect(together).toEqual(alone);
    // A bad request in a batch fails alone.
    const [good, bad] = await Promise.allSettled([sessions[0].evaluate([403]), sessions[1].evaluate([9999])]);
    expect(good.status).toBe('fulfilled');
    expect(bad).toMatchObject({ status: 'rejected', reason: { code: 'E_INVALID_ARGUMENT' } });
    await Promise.all(sessions.map((s) => s.dispose()));
  });

  test('a prompt over maxTokens is E_CONTEXT_OVERFLOW and the session stays usable', async () => {
    const s = model.createSession({ maxTokens: 4 });
    await expect(s.evaluate([1, 2, 3, 4, 5])).rejects.toMatchObject({ code: 'E_CONTEXT_OVERFLOW' });
    expect(s.tokens).toHaveLength(0);
    await expect(s.evaluate([1, 403])).resolves.toHaveLength(512);
    // Generation stops when the session is full instead of failing.
    await s.reset();
    const stream = s.generate('Once upon', { temperature: 0, maxNewTokens: 20 });
    let step = await stream.next();
    while (!step.done) step = await stream.next();
    expect(step.value.finishReason).toBe('contextFull');
    await s.dispose();
  });

  test('bad arguments are typed errors', async () => {
    const s = model.createSession({ maxTokens: 8 });
    await expect(s.evaluate([512])).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(s.evaluate([])).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(s.generate('x', { temperature: -1 }).next()).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(s.generate('x', { topP: 0 }).next()).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    expect(() => model.createSession({ maxTokens: 0 })).toThrow(ChaiError);
    await s.dispose();
    await expect(s.evaluate([1])).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });

  test('cache stats count the pages a full-attention session holds', async () => {
    const s = model.createSession({ maxTokens: 64 });
    await s.evaluate([1, 403, 407, 261, 378]);
    const stats = s.cache.stats();
    // 5 layers × 4 KV heads × one page of 16 tokens × 8 dims × 4 bytes, for K and for V
    expect(stats).toEqual({ tokens: 5, kBytes: 10240, vBytes: 10240, kBytesFull: 10240, vBytesFull: 10240, bytesSaved: 0 });
    await s.dispose();
  });

  test("an f16 KV cache takes half the bytes and stays within 0.05 of the f32 cache's logits", async () => {
    const half = await loadModel(MODEL, { device: 'cpu', kvCacheType: 'f16' });
    const golden = require('../../shared/golden/stories260K.json') as { cases: { promptTokens: number[]; greedy: number[] }[] };
    for (const c of golden.cases) {
      const tokens = [...c.promptTokens, ...c.greedy];
      const a = model.createSession({ maxTokens: 128 });
      const b = half.createSession({ maxTokens: 128 });
      const la = await a.evaluate(tokens, { allLogits: true });
      const lb = await b.evaluate(tokens, { allLogits: true });
      let worst = 0;
      for (let i = 0; i < la.length; i++) worst = Math.max(worst, Math.abs(la[i] - lb[i]));
      expect(worst).toBeLessThan(0.05);
      const sa = a.cache.stats();
      const sb = b.cache.stats();
      expect(sb.kBytes * 2).toBe(sa.kBytes);
      expect(sb.vBytes * 2).toBe(sa.vBytes);
      await a.dispose();
      await b.dispose();
    }
    half.dispose();
    await expect(loadModel(MODEL, { kvCacheType: 'f8' as 'f16' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });

  test('explicit CUDA without a usable GPU is E_DEVICE_UNAVAILABLE', async () => {
    const { devices } = await import('../lib');
    if (devices().cuda.available) return; // covered by the GPU tests
    await expect(loadModel(MODEL, { device: 'cuda:0' })).rejects.toMatchObject({ code: 'E_DEVICE_UNAVAILABLE' });
  });
});
