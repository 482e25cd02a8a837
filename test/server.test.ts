// `chai-attn serve`: the OpenAI-compatible server, driven by the official openai client.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import OpenAI from 'openai';
import { ClusterPlan, loadModel, Model, plainChatFormat, RunningServer, Scheduler, serveModel, ServeOptions } from '../lib';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const parsePrometheus = require('parse-prometheus-text-format') as (text: string) => {
  name: string;
  type: string;
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string> }[];
}[];

const models = path.join(__dirname, '..', '..', 'shared', 'models');
const stories = path.join(models, 'stories260K.gguf');
const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const PROMPTS = ['Once upon a time', 'The little dog', 'Tom and Lily went to the park', 'One day, a big red ball'];

function client(server: RunningServer, apiKey = 'unused'): OpenAI {
  return new OpenAI({ baseURL: `${server.url}/v1`, apiKey, maxRetries: 0 });
}

type Families = Map<string, ReturnType<typeof parsePrometheus>[number]>;

async function scrape(server: RunningServer): Promise<Families> {
  const response = await fetch(`${server.url}/metrics`);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return new Map(parsePrometheus(await response.text()).map((f) => [f.name, f]));
}

function value(families: Families, name: string, labels: Record<string, string> = {}): number {
  const family = families.get(name);
  if (!family) throw new Error(`no metric ${name}`);
  const sample = family.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  return sample ? Number(sample.value) : 0;
}

/** The count of a histogram, and its buckets by upper bound. */
function histogram(families: Families, name: string): { count: number; buckets: Record<string, number> } {
  const h = families.get(name)?.metrics[0] as { count: string; buckets: Record<string, string> } | undefined;
  if (!h) throw new Error(`no histogram ${name}`);
  return { count: Number(h.count), buckets: Object.fromEntries(Object.entries(h.buckets).map(([le, n]) => [le, Number(n)])) };
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting until ${what}`);
}

describe('chai-attn serve (OpenAI API over continuous batching)', () => {
  let model: Model;
  let server: RunningServer;
  let openai: OpenAI;
  const servers: RunningServer[] = [];
  const loaded: Model[] = [];

  async function start(options: ServeOptions, on = model): Promise<RunningServer> {
    const s = await serveModel(on, { port: 0, ...options });
    servers.push(s);
    return s;
  }

  beforeAll(async () => {
    model = await loadModel(stories, { threads: 1 });
    loaded.push(model);
    server = await start({});
    openai = client(server);
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.close()));
    loaded.forEach((m) => m.dispose());
  });

  async function alone(prompt: string, maxNewTokens: number): Promise<string> {
    const session = model.createSession();
    const stream = session.generate(prompt, { temperature: 0, maxNewTokens });
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        await session.dispose();
        return step.value.text;
      }
    }
  }

  test('/v1/models lists the model; /health answers', async () => {
    const list = await openai.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['stories260K']);
    expect((await openai.models.retrieve('stories260K')).owned_by).toBe('chai-attention');
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', model: 'stories260K' });
  });

  test('a greedy completion is what a session generates alone, with usage counts', async () => {
    const r = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[0], max_tokens: 40, temperature: 0 });
    expect(r.object).toBe('text_completion');
    expect(r.choices[0].text).toBe(await alone(PROMPTS[0], 40));
    expect(r.choices[0].finish_reason).toBe('length');
    const promptTokens = model.tokenizer.encode(PROMPTS[0], { addBos: model.tokenizer.addBos }).length;
    expect(r.usage).toMatchObject({ prompt_tokens: promptTokens, completion_tokens: 40, total_tokens: promptTokens + 40 });
    // Earlier requests may have left this prompt's pages in the prefix cache: at most all but its last token.
    expect(r.usage?.prompt_tokens_details?.cached_tokens).toBeLessThan(promptTokens);
    // OpenAI's default for completions: 16 new tokens.
    const short = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[0], temperature: 0 });
    expect(short.usage?.completion_tokens).toBe(16);
  });

  test('a completion from token ids equals the one from text; stop strings cut the text', async () => {
    const ids = model.tokenizer.encode(PROMPTS[1], { addBos: model.tokenizer.addBos });
    const fromIds = await openai.completions.create({ model: 'stories260K', prompt: ids, max_tokens: 30, temperature: 0 });
    const full = await alone(PROMPTS[1], 30);
    expect(fromIds.choices[0].text).toBe(full);
    const stop = full.slice(10, 14);
    const stopped = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[1], max_tokens: 30, temperature: 0, stop: [stop] });
    expect(stopped.choices[0].text).toBe(full.slice(0, full.indexOf(stop)));
    expect(stopped.choices[0].finish_reason).toBe('stop');
    const streamed = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[1], max_tokens: 30, temperature: 0, stop, stream: true });
    let text = '';
    for await (const chunk of streamed) text += chunk.choices[0]?.text ?? '';
    expect(text).toBe(stopped.choices[0].text);
  });

  test('chat completions use the plain format of a model without a chat template', async () => {
    const messages = [
      { role: 'system' as const, content: 'You tell stories.' },
      { role: 'user' as const, content: 'Tell me about a cat.' },
    ];
    const r = await openai.chat.completions.create({ model: 'stories260K', messages, max_tokens: 24, temperature: 0 });
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0].message.role).toBe('assistant');
    const rendered = plainChatFormat.render(messages);
    expect(rendered).toBe('System: You tell stories.\n\nUser: Tell me about a cat.\n\nAssistant:');
    expect(r.usage?.prompt_tokens).toBe(model.tokenizer.encode(rendered, { addBos: model.tokenizer.addBos }).length);
    const expected = await alone(rendered, 24);
    const cut = expected.indexOf('\nUser:');
    expect(r.choices[0].message.content).toBe(cut >= 0 ? expected.slice(0, cut) : expected);
  });

  test('streamed text equals non-streamed text (greedy, and sampled with one seed), completion and chat', async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 0.9, top_p: 0.9, seed: 7, top_k: 20 }]) {
      const plain = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[2], max_tokens: 48, ...sampling });
      const stream = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[2], max_tokens: 48, stream: true, stream_options: { include_usage: true }, ...sampling });
      let text = '';
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | undefined;
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.text ?? '';
        finish = chunk.choices[0]?.finish_reason ?? finish;
        usage = chunk.usage ?? usage;
      }
      expect(chunks).toBeGreaterThan(10);
      expect(text).toBe(plain.choices[0].text);
      expect(finish).toBe(plain.choices[0].finish_reason);
      // The same counts; the second of the two may read the first's prompt from the prefix cache.
      expect({ ...usage, prompt_tokens_details: null }).toEqual({ ...plain.usage, prompt_tokens_details: null });

      const messages = [{ role: 'user' as const, content: PROMPTS[3] }];
      const chat = await openai.chat.completions.create({ model: 'stories260K', messages, max_tokens: 32, ...sampling });
      const chatStream = await openai.chat.completions.create({ model: 'stories260K', messages, max_tokens: 32, stream: true, ...sampling });
      let content = '';
      for await (const chunk of chatStream) content += chunk.choices[0]?.delta.content ?? '';
      expect(content).toBe(chat.choices[0].message.content);
    }
  });

  test('16 concurrent greedy requests each return what one request alone returns, in shared batches', async () => {
    const before = histogram(await scrape(server), 'chai_batch_sequences').count;
    const requests = Array.from({ length: 16 }, (_, i) => ({ prompt: PROMPTS[i % 4], max_tokens: 20 + 3 * i }));
    const expected = await Promise.all(requests.map(async (r) => (await openai.completions.create({ model: 'stories260K', temperature: 0, ...r })).choices[0].text));
    const stepsTogether = histogram(await scrape(server), 'chai_batch_sequences').count - before;
    // Sequentially: one request at a time.
    const sequential: string[] = [];
    for (const r of requests) sequential.push((await openai.completions.create({ model: 'stories260K', temperature: 0, ...r })).choices[0].text);
    expect(expected).toEqual(sequential);
    for (let i = 0; i < 16; i++) expect(expected[i]).toBe(await alone(requests[i].prompt, requests[i].max_tokens));
    // Together they took far fewer forward passes than their tokens: they shared steps.
    const tokens = requests.reduce((n, r) => n + r.max_tokens, 0);
    expect(stepsTogether).toBeLessThan(tokens / 4);
  });

  test('a client that aborts mid-stream cancels its request and frees its KV pages', async () => {
    const controller = new AbortController();
    const stream = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[0], max_tokens: 1500, temperature: 0, stream: true }, { signal: controller.signal });
    let chunks = 0;
    let during: Families | undefined;
    for await (const _chunk of stream) {
      if (++chunks === 5) {
        during = await scrape(server);
        controller.abort(); // the openai client closes the connection; its stream then ends
      }
    }
    expect(chunks).toBeLessThan(1500);
    expect(value(during!, 'chai_running_sequences')).toBe(1);
    expect(value(during!, 'chai_kv_pages_used')).toBeGreaterThan(0);
    await until(async () => {
      const m = await scrape(server);
      // Pages still used are the prefix cache's alone (evicted when a request needs room).
      return value(m, 'chai_kv_pages_used') === value(m, 'chai_prefix_cache_pages') && value(m, 'chai_running_sequences') === 0 && value(m, 'chai_requests_total', { endpoint: '/v1/completions', status: 'cancelled' }) >= 1;
    }, 'the cancelled request has left the batch and returned its pages');
    expect(value(await scrape(server), 'chai_generated_tokens_total')).toBeGreaterThan(0);
  });

  test('/metrics is Prometheus text with the server’s families', async () => {
    await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[0], max_tokens: 4 });
    const m = await scrape(server);
    const types: Record<string, string> = {
      chai_requests_total: 'COUNTER',
      chai_prompt_tokens_total: 'COUNTER',
      chai_generated_tokens_total: 'COUNTER',
      chai_queue_depth: 'GAUGE',
      chai_running_sequences: 'GAUGE',
      chai_kv_pages_used: 'GAUGE',
      chai_kv_pages_free: 'GAUGE',
      chai_kv_bytes_saved: 'GAUGE',
      chai_prefix_cache_pages: 'GAUGE',
      chai_prefix_cache_hit_rate: 'GAUGE',
      chai_prefix_cache_evicted_pages: 'GAUGE',
      chai_prompt_cached_tokens_total: 'COUNTER',
      chai_time_to_first_token_seconds: 'HISTOGRAM',
      chai_inter_token_seconds: 'HISTOGRAM',
    };
    for (const [name, type] of Object.entries(types)) expect([name, m.get(name)?.type]).toEqual([name, type]);
    expect(value(m, 'chai_requests_total', { endpoint: '/v1/completions', status: '200' })).toBeGreaterThanOrEqual(1);
    const ttft = histogram(m, 'chai_time_to_first_token_seconds');
    expect(ttft.count).toBeGreaterThanOrEqual(1);
    expect(ttft.buckets['+Inf']).toBe(ttft.count);
    expect(histogram(m, 'chai_inter_token_seconds').count).toBeGreaterThanOrEqual(3);
  });

  test('bad requests get 400 (or 404) in OpenAI’s error shape', async () => {
    const post = async (route: string, body: string): Promise<{ status: number; error: { message: string; type: string; param: string | null; code: string | null } }> => {
      const r = await fetch(`${server.url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      return { status: r.status, ...((await r.json()) as { error: { message: string; type: string; param: string | null; code: string | null } }) };
    };
    const badJson = await post('/v1/completions', '{"model": "stories260K", "prompt": ');
    expect(badJson.status).toBe(400);
    expect(badJson.error.type).toBe('invalid_request_error');
    expect(Object.keys(badJson.error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect((await post('/v1/completions', '[1, 2]')).status).toBe(400);
    const noMessages = await post('/v1/chat/completions', JSON.stringify({ model: 'stories260K' }));
    expect([noMessages.status, noMessages.error.param]).toEqual([400, 'messages']);

    const cases: [() => Promise<unknown>, number, string | null][] = [
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', temperature: -1 }), 400, 'temperature'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', n: 2 }), 400, 'n'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', seed: -1 }), 400, 'seed'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', logprobs: 3 }), 400, 'logprobs'],
      [() => openai.completions.create({ model: 'stories260K', prompt: [999999] }), 400, 'prompt'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', logit_bias: { '999999': 1 } }), 400, 'logit_bias'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', logit_bias: { '5': 101 } }), 400, 'logit_bias.5'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'a'.repeat(20000) }), 400, 'prompt'],
      [() => openai.completions.create({ model: 'stories260K', prompt: 'x', max_tokens: 5000 }), 400, 'max_tokens'],
      [() => openai.chat.completions.create({ model: 'stories260K', messages: [{ role: 'wizard' as 'user', content: 'x' }] }), 400, 'messages.0.role'],
      [() => openai.completions.create({ model: 'gpt-4', prompt: 'x' }), 404, 'model'],
    ];
    for (const [call, status, param] of cases) {
      const error = (await call().then(
        () => null,
        (e: unknown) => e,
      )) as InstanceType<typeof OpenAI.APIError>;
      expect([error?.status, error?.param]).toEqual([status, param]);
      expect(error.type).toBe('invalid_request_error');
    }
    const tooLong = (await openai.completions.create({ model: 'stories260K', prompt: 'a'.repeat(20000) }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(tooLong.code).toBe('context_length_exceeded');
  });

  test('an unknown response_format type, more than 4 stop strings: 400 naming the param and the reason', async () => {
    const refused = (await openai.chat.completions
      .create({ model: 'stories260K', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'grammar' } as never })
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect([refused.status, refused.param]).toEqual([400, 'response_format']);
    expect(refused.message).toMatch(/type must be 'text', 'json_object' or 'json_schema', got "grammar"/);
    const text = await openai.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'x' }], max_tokens: 2, response_format: { type: 'text' } });
    expect(text.choices).toHaveLength(1);
    const stops = (await openai.completions.create({ model: 'stories260K', prompt: 'x', stop: ['a', 'b', 'c', 'd', 'e'] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect([stops.status, stops.param]).toEqual([400, 'stop']);
    expect(stops.message).toMatch(/at most 4 stop strings/);
  });

  test('penalties, repeat penalty and min_p are applied as a session applies them; out of range is 400', async () => {
    const sampling = { frequency_penalty: 0.8, presence_penalty: 0.3, repeat_penalty: 1.3, repeat_last_n: 16, min_p: 0.2, temperature: 1, seed: 7 };
    const r = await openai.completions.create({ model: 'stories260K', prompt: PROMPTS[0], max_tokens: 24, ...sampling } as Parameters<typeof openai.completions.create>[0] & { stream?: false });
    const session = model.createSession();
    const stream = session.generate(PROMPTS[0], { maxNewTokens: 24, frequencyPenalty: 0.8, presencePenalty: 0.3, repeatPenalty: 1.3, repeatLastN: 16, minP: 0.2, temperature: 1, seed: 7, topK: 0, topP: 1 });
    let step = await stream.next();
    while (!step.done) step = await stream.next();
    await session.dispose();
    expect(r.choices[0].text).toBe(step.value.text);
    const refused = (await openai.completions.create({ model: 'stories260K', prompt: 'x', frequency_penalty: 3 }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect([refused.status, refused.param]).toEqual([400, 'frequency_penalty']);
  });

  test('another method on a known path is 405 with Allow', async () => {
    const get = await fetch(`${server.url}/v1/completions`);
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
    expect(((await get.json()) as { error: { code: string } }).error.code).toBe('method_not_allowed');
    const post = await fetch(`${server.url}/v1/models`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toMatch(/GET/);
    expect((await fetch(`${server.url}/v1/nothing`)).status).toBe(404);
  });

  test('an array of prompts gets one choice per prompt, in order, streamed or not', async () => {
    const prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[2]];
    const expected = await Promise.all(prompts.map((p) => alone(p, 8)));
    const r = await openai.completions.create({ model: 'stories260K', prompt: prompts, max_tokens: 8, temperature: 0 });
    expect(r.choices.map((c) => [c.index, c.text])).toEqual(expected.map((text, i) => [i, text]));
    expect(r.usage!.completion_tokens).toBe(24);
    const ids = prompts.map((p) => model.tokenizer.encode(p, { addBos: model.tokenizer.addBos }));
    const fromIds = await openai.completions.create({ model: 'stories260K', prompt: ids, max_tokens: 8, temperature: 0 });
    expect(fromIds.choices.map((c) => c.text)).toEqual(expected);
    const streamed = ['', '', ''];
    const finished: number[] = [];
    for await (const chunk of await openai.completions.create({ model: 'stories260K', prompt: prompts, max_tokens: 8, temperature: 0, stream: true })) {
      for (const c of chunk.choices) {
        streamed[c.index] += c.text;
        if (c.finish_reason) finished.push(c.index);
      }
    }
    expect(streamed).toEqual(expected);
    expect(finished.sort()).toEqual([0, 1, 2]);
  });

  test('a wrong or missing API key gets 401; the right one passes; /health stays open', async () => {
    const guarded = await start({ apiKey: 'sesame' });
    const wrong = await client(guarded, 'nope').models.list().catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((wrong as InstanceType<typeof OpenAI.APIError>).code).toBe('invalid_api_key');
    expect((await fetch(`${guarded.url}/v1/models`)).status).toBe(401);
    expect((await client(guarded, 'sesame').models.list()).data).toHaveLength(1);
    expect((await fetch(`${guarded.url}/health`)).status).toBe(200);
  });

  test('CORS: off by default; with corsOrigin a preflight is answered without the key, real requests still need it', async () => {
    const preflight = { method: 'OPTIONS', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } };
    const closed = await fetch(`${server.url}/v1/chat/completions`, preflight);
    expect(closed.headers.get('access-control-allow-origin')).toBeNull();
    expect((await fetch(`${server.url}/v1/models`, { headers: { origin: 'http://localhost:5173' } })).headers.get('access-control-allow-origin')).toBeNull();

    const open = await start({ apiKey: 'sesame', corsOrigin: 'http://localhost:5173' });
    const answered = await fetch(`${open.url}/v1/chat/completions`, preflight);
    expect(answered.status).toBe(204);
    expect(answered.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');
    expect(answered.headers.get('access-control-allow-methods')).toMatch(/POST/);
    const body = JSON.stringify({ model: 'stories260K', prompt: 'x', max_tokens: 1 });
    const headers = { origin: 'http://localhost:5173', 'content-type': 'application/json' };
    const noKey = await fetch(`${open.url}/v1/completions`, { method: 'POST', headers, body });
    expect(noKey.status).toBe(401);
    expect(noKey.headers.get('access-control-allow-origin')).toBe('http://localhost:5173'); // the page can read why
    const withKey = await fetch(`${open.url}/v1/completions`, { method: 'POST', headers: { ...headers, authorization: 'Bearer sesame' }, body });
    expect(withKey.status).toBe(200);
    expect(withKey.headers.get('access-control-allow-origin')).toBe('http://localhost:5173');

    const any = await start({ corsOrigin: '*' });
    expect((await fetch(`${any.url}/v1/models`, { headers: { origin: 'https://example.org' } })).headers.get('access-control-allow-origin')).toBe('*');
    await expect(start({ corsOrigin: 'localhost:5173/app' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT', option: 'corsOrigin' });
  });

  test('a full queue answers 429; the requests already taken still finish', async () => {
    const busy = await start({ maxConcurrent: 1, maxQueue: 1 });
    const c = client(busy);
    const first = await c.completions.create({ model: 'stories260K', prompt: PROMPTS[0], max_tokens: 800, temperature: 0, stream: true });
    const firstDone = (async () => {
      let n = 0;
      for await (const chunk of first) n += chunk.choices[0]?.text ? 1 : 0;
      return n;
    })();
    await until(async () => busy.scheduler.runningSequences === 1, 'the first request runs');
    const second = c.completions.create({ model: 'stories260K', prompt: PROMPTS[1], max_tokens: 8, temperature: 0 });
    await until(async () => busy.scheduler.queueDepth === 1, 'the second request waits');
    const third = await c.completions.create({ model: 'stories260K', prompt: PROMPTS[2], max_tokens: 8 }).catch((e: unknown) => e);
    expect(third).toBeInstanceOf(OpenAI.RateLimitError);
    expect((third as InstanceType<typeof OpenAI.APIError>).code).toBe('queue_full');
    expect((third as InstanceType<typeof OpenAI.APIError>).headers?.get('retry-after')).toMatch(/^\d+$/);
    expect(await firstDone).toBeGreaterThan(100);
    expect((await second).choices[0].text).toBe(await alone(PROMPTS[1], 8));
  });

  test('with a small KV cache cap requests wait for pages instead of failing, and one too large is refused', async () => {
    const pagesFor = (tokens: number): number => model.kvPool.pagesFor(tokens);
    const pageBytes = model.kvPool.stats().pageBytes;
    // Room for one request of 64 tokens at a time, not two.
    const small = await loadModel(stories, { threads: 1, kvCacheBytes: Math.floor(1.5 * pagesFor(64)) * pageBytes });
    loaded.push(small);
    const tight = await start({}, small);
    const c = client(tight);
    const requests = PROMPTS.map((prompt) => ({ prompt, max_tokens: 64 - model.tokenizer.encode(prompt, { addBos: true }).length }));
    const texts = await Promise.all(requests.map(async (r) => (await c.completions.create({ model: 'stories260K', temperature: 0, ...r })).choices[0].text));
    for (let i = 0; i < requests.length; i++) expect(texts[i]).toBe(await alone(requests[i].prompt, requests[i].max_tokens));
    const m = await scrape(tight);
    // Every page the sequences held is back, but for the whole pages the prefix cache keeps.
    expect(value(m, 'chai_kv_pages_used')).toBe(value(m, 'chai_prefix_cache_pages'));
    expect(value(m, 'chai_kv_pages_free')).toBe(small.kvPool.stats().pagesTotal! - value(m, 'chai_prefix_cache_pages'));
    // Never more than one in the batch: every step held one sequence.
    const batches = histogram(m, 'chai_batch_sequences');
    expect(batches.buckets['1']).toBe(batches.count);
    const huge = (await c.completions.create({ model: 'stories260K', prompt: 'x', max_tokens: 1000 }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect([huge.status, huge.code]).toEqual([400, 'context_length_exceeded']);
  });

  test('with a CHAI plan each request clusters its own heads; output equals a CHAI session alone', async () => {
    const mha = await loadModel(path.join(models, 'stories260K-mha.gguf'), { threads: 1 });
    loaded.push(mha);
    const plan = ClusterPlan.create(mha.info, [8, 8, 8, 4, 4], { method: 'agglomerative', representative: 'first' });
    const chaiServer = await start({ chai: plan }, mha);
    const c = client(chaiServer);
    const expected: string[] = [];
    for (const prompt of PROMPTS) {
      const session = mha.createSession({ chai: plan });
      let text = '';
      for await (const t of session.generate(prompt, { temperature: 0, maxNewTokens: 30 })) text += t.text;
      await session.dispose();
      expected.push(text);
    }
    const stream = await c.completions.create({ model: 'stories260K-mha', prompt: PROMPTS[0], max_tokens: 400, temperature: 0, stream: true });
    let saved = 0;
    const texts = await Promise.all(PROMPTS.map(async (prompt) => (await c.completions.create({ model: 'stories260K-mha', prompt, max_tokens: 30, temperature: 0 })).choices[0].text));
    for await (const _chunk of stream) if (saved === 0) saved = value(await scrape(chaiServer), 'chai_kv_bytes_saved');
    expect(texts).toEqual(expected);
    expect(saved).toBeGreaterThan(0);
  });

  test('a long prompt is read in chunks between the other sequences’ decode steps; outputs are unchanged', async () => {
    const steps: { sequences: number; tokens: number }[] = [];
    // Without the prefix cache, so that the whole long prompt is read (earlier tests may have cached part of it).
    const scheduler = new Scheduler(model, { prefillTokensPerStep: 32, prefixCache: false, observer: { step: (sequences, tokens) => steps.push({ sequences, tokens }) } });
    const long = fs.readFileSync(path.join(__dirname, '..', '..', 'shared', 'data', 'stories-calib.txt'), 'utf8').slice(0, 400);
    const longTokens = model.tokenizer.encode(long, { addBos: true });
    expect(longTokens.length).toBeGreaterThan(100);
    const greedy = { temperature: 0, topK: 0, topP: 1, seed: 1 };
    const short = model.tokenizer.encode(PROMPTS[0], { addBos: true });
    let started!: () => void;
    const decoding = new Promise<void>((r) => (started = r));
    const first = scheduler.submit({ prompt: short, maxNewTokens: 60, ...greedy, onText: () => started() });
    await decoding;
    const second = scheduler.submit({ prompt: longTokens, maxNewTokens: 10, ...greedy });
    const [a, b] = await Promise.all([first, second]);
    expect(a.text).toBe(await alone(PROMPTS[0], 60));
    expect(b.text).toBe(await alone(long, 10));
    // The long prompt went in 32-token chunks, each beside one decode token of the first request.
    expect(Math.max(...steps.map((s) => s.tokens))).toBeLessThanOrEqual(33);
    expect(steps.filter((s) => s.sequences === 2 && s.tokens === 33).length).toBe(Math.floor(longTokens.length / 32));
    await scheduler.close();
  });

  /** `chai-attn serve` in a child process, once it listens. */
  async function spawnServe(): Promise<{ child: ReturnType<typeof spawn>; url: string; exited: Promise<number | null>; stderr: () => string }> {
    const child = spawn(process.execPath, [cli, 'serve', '--model', stories, '--port', '0', '--threads', '1', '--kv-memory', '0.01'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
    return { child, url, exited, stderr: () => stderr };
  }

  test('SIGTERM: the CLI stops accepting, finishes the running request and exits 0', async () => {
    const { child, url, exited, stderr } = await spawnServe();
    const c = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const stream = await c.completions.create({ model: 'stories260K', prompt: PROMPTS[0], max_tokens: 1000, temperature: 0, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (text === '') child.kill('SIGTERM');
      text += chunk.choices[0]?.text ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('length');
    expect(text).toBe(await alone(PROMPTS[0], 1000));
    expect(await exited).toBe(0);
    expect(stderr()).toMatch(/SIGTERM/);
  });

  test('Ctrl-C: the CLI closes the server the same way and exits with 130, as other commands do', async () => {
    const { child, url, exited } = await spawnServe();
    expect((await fetch(`${url}/health`)).status).toBe(200);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
  });
});
