// Prefix caching: sessions that opt in share the KV pages of a common prompt prefix; the result is
// an uncached run's; serve uses it by default and reports it as OpenAI does.
import { spawn } from 'node:child_process';
import path from 'node:path';
import OpenAI from 'openai';
import { ChatSession, ClusterPlan, loadModel, Model, RunningServer, serveModel, Session } from '../lib';
import { native } from '../lib/native';
import { relativeError } from './helpers';

const models = path.join(__dirname, '..', '..', 'shared', 'models');
const stories = path.join(models, 'stories260K.gguf');
const storiesMha = path.join(models, 'stories260K-mha.gguf');
const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

// About 60 tokens of shared "system prompt", then two different questions.
const SYSTEM =
  'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. ' +
  'One day, she saw a big red ball under a tree and ran to get it.';
const FIRST = `${SYSTEM} Her mom said`;
const SECOND = `${SYSTEM} Then a bird flew down and sang`;

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/** The logits after the prompt and after each of `steps` greedy tokens, and the tokens. */
async function greedy(session: Session, prompt: number[], steps: number): Promise<{ logits: Float32Array[]; tokens: number[] }> {
  const logits = [await session.evaluate(prompt)];
  const tokens: number[] = [];
  for (let i = 0; i < steps; i++) {
    tokens.push(argmax(logits[logits.length - 1]));
    logits.push(await session.evaluate([tokens[tokens.length - 1]]));
  }
  return { logits, tokens };
}

describe('prefix caching', () => {
  const loaded: Model[] = [];
  afterAll(() => loaded.forEach((m) => m.dispose()));
  async function load(file: string, kvCacheBytes = 0): Promise<Model> {
    const model = await loadModel(file, { threads: 1, kvCacheBytes });
    loaded.push(model);
    return model;
  }

  for (const [name, file, chai] of [
    ['stories260K', stories, false],
    ['stories260K-mha with a CHAI plan', storiesMha, true],
  ] as const) {
    test(`${name}: a second request sharing a long prefix reads it from the cache and computes what an uncached run does`, async () => {
      const model = await load(file);
      const plan = chai ? ClusterPlan.create(model.info, [8, 8, 4, 2, 2], { method: 'kmeans', seed: 5 }) : undefined;
      const encode = (text: string): number[] => model.tokenizer.encode(text, { addBos: model.tokenizer.addBos });
      const shared = encode(SYSTEM).length;
      expect(shared).toBeGreaterThan(48);

      const donor = model.createSession({ prefixCache: true, chai: plan });
      await greedy(donor, encode(FIRST), 4);
      expect(donor.cachedTokens).toBe(0);
      expect(model.prefixCache.stats().cachedBlocks).toBeGreaterThanOrEqual(Math.floor(shared / 16));

      const second = encode(SECOND);
      const cached = model.createSession({ prefixCache: true, chai: plan });
      const hit = await greedy(cached, second, 12);
      const fresh = model.createSession({ chai: plan });
      const miss = await greedy(fresh, second, 12);
      // The shared text, minus what tokenizes differently at its end.
      expect(cached.cachedTokens).toBeGreaterThanOrEqual(shared - 2);
      expect(cached.cachedTokens).toBeLessThan(second.length);
      for (let i = 0; i < hit.logits.length; i++) expect(relativeError(hit.logits[i], miss.logits[i])).toBeLessThan(1e-4);
      expect(hit.tokens).toEqual(miss.tokens);
      if (plan) for (let l = 0; l < model.info.layers; l++) expect(cached.assignment(l)).toEqual(donor.assignment(l));

      // generate() reports it too (now the whole prompt but its last token: `cached` computed it);
      // a later turn on the same session reads nothing from the cache.
      const chat = model.createSession({ prefixCache: true, chai: plan });
      const it = chat.generate(SECOND, { temperature: 0, maxNewTokens: 12 });
      let r = await it.next();
      while (!r.done) r = await it.next();
      expect(r.value.cachedTokens).toBe(second.length - 1);
      expect(r.value.tokens).toEqual(miss.tokens);
      const next = chat.generate(' and', { temperature: 0, maxNewTokens: 2 });
      let n = await next.next();
      while (!n.done) n = await next.next();
      expect(n.value.cachedTokens).toBe(0);

      const stats = model.prefixCache.stats();
      expect(stats.hits).toBeGreaterThanOrEqual(2);
      expect(stats.hitTokens).toBeGreaterThan(0);
      expect(stats.hitRate).toBeCloseTo(stats.hitTokens / stats.lookupTokens, 12);
      expect(stats.cachedPages).toBeGreaterThan(0);
      await Promise.all([donor, cached, fresh, chat].map((s) => s.dispose()));
      // Disposed sessions leave their whole pages to the cache; clear() gives them back.
      expect(model.kvPool.stats().pagesInUse).toBe(model.prefixCache.stats().cachedPages);
      model.prefixCache.clear();
      expect(model.kvPool.stats().pagesInUse).toBe(0);
      expect(model.prefixCache.stats().cachedBlocks).toBe(0);
    });
  }

  test('ChatSession with prefixCache: a second chat with the same system prompt reads it from the cache, same reply', async () => {
    const model = await load(stories);
    const template = '{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}';
    const chat = (prefixCache: boolean): ChatSession => new ChatSession(model, { systemPrompt: SYSTEM, template, prefixCache });
    const first = chat(true);
    expect((await first.reply('Tell me more.', { temperature: 0, maxNewTokens: 8 })).cachedTokens).toBe(0);
    const second = chat(true);
    const cached = await second.reply('What happened next?', { temperature: 0, maxNewTokens: 16 });
    expect(cached.cachedTokens).toBeGreaterThan(48);
    const plain = chat(false);
    const uncached = await plain.reply('What happened next?', { temperature: 0, maxNewTokens: 16 });
    expect(uncached.cachedTokens).toBe(0);
    expect(cached.text).toBe(uncached.text);
    // The next turn continues from the chat's own cache, not the prefix cache.
    expect(await second.reply('And then?', { temperature: 0, maxNewTokens: 4 })).toMatchObject({ cachedTokens: 0, reusedTokens: expect.any(Number) });
    await Promise.all([first.dispose(), second.dispose(), plain.dispose()]);
  });

  test('under a small KV cache cap, cached pages are evicted for new requests; pages in use stay', async () => {
    const probe = await load(stories);
    const row = probe.kvPool.pagesFor(16); // the pages of 16 tokens
    const model = await load(stories, 6 * row * probe.kvPool.stats().pageBytes);
    const prompts = [0, 1, 2, 3].map((k) => Array.from({ length: 33 }, (_, i) => 3 + ((k * 131 + i * 7) % 500)));
    for (const prompt of prompts) {
      const s = model.createSession({ prefixCache: true, maxTokens: 64 });
      await s.evaluate(prompt); // three pages held, two of them cached
      await s.dispose();
    }
    const stats = model.prefixCache.stats();
    expect(stats.evictedPages).toBeGreaterThan(0);
    expect(model.kvPool.stats().pagesInUse).toBeLessThanOrEqual(6 * row);

    // A session holding the last prompt's pages keeps them through a request that needs everything.
    const holder = model.createSession({ prefixCache: true, maxTokens: 64 });
    expect(holder.reusePrefix([...prompts[3], 9])).toBe(32);
    const big = model.createSession({ prefixCache: true, maxTokens: 96 });
    await expect(big.evaluate(Array.from({ length: 80 }, (_, i) => 3 + i))).rejects.toMatchObject({ code: 'E_DEVICE_OOM' });
    expect(model.prefixCache.stats().cachedPages).toBe(2 * row);
    const logits = await holder.evaluate([9]);
    const fresh = model.createSession({ maxTokens: 64 });
    await holder.dispose();
    expect(relativeError(logits, await fresh.evaluate([...prompts[3].slice(0, 32), 9]))).toBeLessThan(1e-4);
    await Promise.all([big.dispose(), fresh.dispose()]);
  });

  test('misuse gets typed errors', async () => {
    const model = await load(stories);
    const plain = model.createSession();
    expect(() => plain.reusePrefix([1, 2, 3])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT', option: 'prefixCache' }));
    expect(() => model.createSession({ prefixCache: 'yes' as unknown as boolean })).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT', option: 'prefixCache' }));
    const s = model.createSession({ prefixCache: true });
    expect(() => s.reusePrefix([1, model.info.vocabSize])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    await s.evaluate([1, 2]);
    expect(() => s.reusePrefix([1, 2, 3])).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    await s.reset();
    expect(s.reusePrefix([1, 2, 3])).toBe(0); // its first page never filled: nothing was cached
    // The addon's own checks, for callers that reach it directly.
    const addon = native();
    const session = addon.createSession(model.nativeHandle(), 32, undefined, false);
    const code = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (error) {
        return (error as { code?: unknown }).code;
      }
      return 'no error';
    };
    expect(code(() => addon.reusePrefix(session, Int32Array.from([1, 2])))).toBe('E_INVALID_ARGUMENT');
    expect(code(() => addon.createSession(model.nativeHandle(), 32, undefined, 1 as unknown as boolean))).toBe('E_INVALID_ARGUMENT');
    const cachedSession = addon.createSession(model.nativeHandle(), 32, undefined, true);
    expect(code(() => addon.reusePrefix(cachedSession, [1, 2] as unknown as Int32Array))).toBe('E_INVALID_ARGUMENT');
    expect(code(() => addon.reusePrefix(cachedSession, Int32Array.from([1, -1])))).toBe('E_INVALID_ARGUMENT');
    addon.disposeSession(cachedSession);
    expect(code(() => addon.reusePrefix(cachedSession, Int32Array.from([1, 2])))).toBe('E_INVALID_ARGUMENT');
    expect(code(() => addon.prefixCacheInfo({}))).toBe('E_INVALID_ARGUMENT');
    addon.disposeSession(session);
    await Promise.all([plain.dispose(), s.dispose()]);
  });

  describe('serve', () => {
    let model: Model;
    const servers: RunningServer[] = [];
    beforeAll(async () => {
      model = await load(stories);
    });
    afterAll(async () => {
      await Promise.all(servers.map((s) => s.close()));
    });
    async function start(prefixCache?: boolean): Promise<OpenAI> {
      const server = await serveModel(model, { port: 0, prefixCache });
      servers.push(server);
      return new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    }

    test('a second request sharing a long prefix reports usage.prompt_tokens_details.cached_tokens, output unchanged; metrics count it', async () => {
      const openai = await start();
      const ask = (prompt: string, extra: object = {}) => openai.completions.create({ model: 'stories260K', prompt, max_tokens: 12, temperature: 0, ...extra });
      const first = await ask(FIRST);
      expect(first.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
      const second = await ask(SECOND);
      expect(second.usage?.prompt_tokens_details?.cached_tokens).toBeGreaterThan(40);
      const uncached = await ask(SECOND, { cache_prompt: false });
      expect(uncached.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
      expect(second.choices[0].text).toBe(uncached.choices[0].text);

      const metrics = await (await fetch(`${servers[0].url ?? ''}/metrics`)).text();
      const read = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
      expect(read('chai_prefix_cache_pages')).toBeGreaterThan(0);
      expect(read('chai_prefix_cache_hit_rate')).toBeGreaterThan(0);
      expect(read('chai_prefix_cache_hit_rate')).toBeLessThanOrEqual(1);
      expect(read('chai_prompt_cached_tokens_total')).toBe(second.usage?.prompt_tokens_details?.cached_tokens);
      expect(read('chai_prefix_cache_evicted_pages')).toBe(0);
    });

    test('under a small KV cache cap (--kv-memory) cached prefixes are evicted least recently used; outputs unchanged', async () => {
      const row = model.kvPool.pagesFor(16);
      const small = await load(stories, 8 * row * model.kvPool.stats().pageBytes);
      const server = await serveModel(small, { port: 0 });
      servers.push(server);
      const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      // 40 tokens each, no two alike from the first token on (no BOS: nothing shared).
      const prompts = [0, 1, 2, 3, 4].map((k) => Array.from({ length: 40 }, (_, i) => 3 + ((k * 97 + i * 13) % 500)));
      const ask = (prompt: number[]) => openai.completions.create({ model: 'stories260K', prompt, max_tokens: 8, temperature: 0 });
      const texts: string[] = [];
      for (const prompt of prompts) {
        const r = await ask(prompt);
        expect(r.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
        texts.push(r.choices[0].text);
      }
      const stats = small.prefixCache.stats();
      expect(stats.evictedPages).toBeGreaterThan(0);
      expect(small.kvPool.stats().pagesInUse).toBeLessThanOrEqual(8 * row);
      // The most recent prompt's two whole pages are still cached, the first prompt's are not.
      const again = await ask(prompts[4]);
      expect(again.usage?.prompt_tokens_details?.cached_tokens).toBe(32);
      expect(again.choices[0].text).toBe(texts[4]);
      expect((await ask(prompts[0])).usage?.prompt_tokens_details?.cached_tokens).toBe(0);
      // What the server answered is what an uncached session generates.
      for (let k = 0; k < prompts.length; k++) {
        const alone = model.createSession();
        const it = alone.generate(prompts[k], { temperature: 0, maxNewTokens: 8 });
        let g = await it.next();
        while (!g.done) g = await it.next();
        await alone.dispose();
        expect(texts[k]).toBe(g.value.text);
      }
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(Number(/^chai_prefix_cache_evicted_pages (\S+)$/m.exec(metrics)?.[1])).toBeGreaterThan(0);
    });

    test('chai-attn serve --no-prefix-cache says so and computes every prompt', async () => {
      const child = spawn(process.execPath, [cli, 'serve', '--model', stories, '--port', '0', '--threads', '1', '--kv-memory', '0.01', '--no-prefix-cache'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        child.stdout!.on('data', (d: Buffer) => {
          out += d.toString();
          const match = /listening on (http:\/\/\S+)/.exec(out);
          if (match) resolve(match[1]);
        });
        child.on('exit', () => reject(new Error(`the server exited early: ${stderr}`)));
      });
      expect(stderr).toMatch(/prefix cache off/);
      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      for (let i = 0; i < 2; i++) {
        const r = await openai.completions.create({ model: 'stories260K', prompt: SECOND, max_tokens: 4, temperature: 0 });
        expect(r.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
      }
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    });

    test('prefixCache: false computes every prompt', async () => {
      const openai = await start(false);
      for (let i = 0; i < 2; i++) {
        const r = await openai.completions.create({ model: 'stories260K', prompt: SECOND, max_tokens: 4, temperature: 0 });
        expect(r.usage?.prompt_tokens_details?.cached_tokens).toBe(0);
      }
    });
  });
});
