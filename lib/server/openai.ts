import { randomUUID, timingSafeEqual } from 'node:crypto';
import cors from '@fastify/cors';
import Fastify, { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import { encodeChatPrompt } from '../chat/template';
import { ChaiError } from '../errors';
import { compileResponseFormat, ResponseFormat } from '../structured/schema';
import type { Model } from '../model';
import { ChatFormat, ChatMessage } from './chat-format';
import type { ServerMetrics } from './metrics';
import { Generation, Scheduler, SchedulerError } from './scheduler';

export interface OpenAiAppOptions {
  /** The id clients name in `model` and that /v1/models lists. */
  modelId: string;
  /** Bearer token that /v1/* requests must carry; none: open. */
  apiKey?: string;
  /** How chats become prompts. */
  chatFormat: ChatFormat;
  /** Browser pages of this origin ('*': any) may call the API (CORS); none: same origin only. */
  corsOrigin?: string;
}

/** An error in OpenAI's shape: `{ error: { message, type, param, code } }` with an HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** Headers the answer carries, such as Retry-After on a 429. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}

function invalid(message: string, param: string | null = null, code: string | null = null): ApiError {
  return new ApiError(400, message, 'invalid_request_error', code, param);
}

/** OpenAI options this server does not implement: accepted only absent, null or at a value that means "off". */
const unsupported = (what: string, ...off: unknown[]) =>
  z
    .unknown()
    .refine((v) => v === undefined || v === null || off.includes(v) || (typeof v === 'object' && Object.keys(v as object).length === 0), {
      message: `${what} is not supported by this server`,
    })
    .optional();

/** OpenAI's limit on stop strings per request. */
const MAX_STOP_STRINGS = 4;

const samplingFields = {
  model: z.string().min(1),
  max_tokens: z.number().int().min(0).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(0).nullish(),
  // The sampler's generator has 32 bits of state: larger seeds would collide with small ones.
  seed: z.number().int().min(0).max(2 ** 32 - 1).nullish(),
  // One stop string or a list of them, read as a list (a union would only say 'Invalid input').
  stop: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.string()).max(MAX_STOP_STRINGS, { message: `at most ${MAX_STOP_STRINGS} stop strings` }).nullish()),
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  n: z.literal(1, { message: 'only n = 1 is supported' }).nullish(),
  // OpenAI's additive penalties over the generated tokens; llama.cpp's repeat penalty (prompt included) and min_p.
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  repeat_penalty: z.number().gt(0).nullish(),
  repeat_last_n: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  // Token id (as a string) -> bias added to its logit before sampling, in OpenAI's range.
  logit_bias: z.record(z.string().regex(/^\d+$/, { message: 'keys must be token ids' }), z.number().min(-100).max(100)).nullish(),
  logprobs: unsupported('logprobs', false, 0),
  // text, json_object or json_schema: checked by compileResponseFormat (the schema subset, keyword by keyword).
  response_format: z.unknown().optional(),
  user: z.string().nullish(),
  // llama-server's switch for reusing (and keeping) the prompt's KV cache; on unless false.
  cache_prompt: z.boolean().nullish(),
};

const CompletionRequest = z.object({
  ...samplingFields,
  // One prompt (text or token ids), or several: one choice each, in order.
  prompt: z.union([z.string(), z.array(z.number().int().min(0)).min(1), z.array(z.string()).min(1), z.array(z.array(z.number().int().min(0)).min(1)).min(1)]),
  echo: unsupported('echo', false),
  best_of: unsupported('best_of', 1),
  suffix: z.null().optional(),
});

const MessageContent = z.union([z.string(), z.array(z.object({ type: z.literal('text'), text: z.string() })), z.null()]);

const ChatRequest = z.object({
  ...samplingFields,
  max_completion_tokens: z.number().int().min(0).nullish(),
  messages: z.array(z.object({ role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']), content: MessageContent.optional() })).min(1),
  top_logprobs: unsupported('top_logprobs'),
  tools: unsupported('tools'),
});

type SamplingRequest = z.infer<typeof CompletionRequest> | z.infer<typeof ChatRequest>;

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid('the request body must be a JSON object');
  const result = schema.safeParse(body);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const param = issue.path.map(String).join('.') || null;
  throw invalid(param ? `${param}: ${issue.message}` : issue.message, param);
}

/** response_format as the scheduler takes it; a schema outside the subset is a 400 naming the keyword. */
function checkedResponseFormat(format: unknown): ResponseFormat | undefined {
  try {
    return compileResponseFormat(format, 'response_format') ? (format as ResponseFormat) : undefined;
  } catch (error) {
    if (error instanceof ChaiError) throw invalid(error.message, 'response_format', 'invalid_response_format');
    throw error;
  }
}

function checkApiKey(header: string | undefined, key: string): boolean {
  const expected = Buffer.from(`Bearer ${key}`);
  const given = Buffer.from(header ?? '');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** What the engine and the scheduler throw, as the HTTP error a client should see. */
function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof SchedulerError) {
    if (error.code === 'queue_full') return new ApiError(429, error.message, 'rate_limit_error', 'queue_full', null, { 'retry-after': '1' });
    if (error.code === 'too_large') return invalid(error.message, 'max_tokens', 'context_length_exceeded');
    return new ApiError(503, error.message, 'server_error', 'shutting_down');
  }
  if (error instanceof ChaiError) {
    if (error.code === 'E_CONTEXT_OVERFLOW') return invalid(error.message, null, 'context_length_exceeded');
    if (error.code === 'E_INVALID_ARGUMENT') return invalid(error.message, error.option ?? null);
  }
  // Fastify's own errors (bad JSON, wrong content type, body too large) keep their 4xx status.
  const { statusCode, code, message } = (error ?? {}) as { statusCode?: number; code?: string; message?: string };
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) return new ApiError(statusCode, message ?? 'bad request', 'invalid_request_error', code ?? null);
  return new ApiError(500, message ?? String(error), 'server_error', 'internal_error');
}

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** As OpenAI reports prompt caching: prompt tokens read from the cache. */
  prompt_tokens_details: { cached_tokens: number };
}

/** Token counts over all the choices of a request. */
function usageOf(generations: readonly Pick<Generation, 'promptTokens' | 'cachedTokens' | 'completionTokens'>[]): Usage {
  const prompt = generations.reduce((n, g) => n + g.promptTokens, 0);
  const cached = generations.reduce((n, g) => n + g.cachedTokens, 0);
  const completion = generations.reduce((n, g) => n + g.completionTokens, 0);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion, prompt_tokens_details: { cached_tokens: cached } };
}

/** The two endpoints differ only in how they shape their prompt and their replies. */
interface Endpoint {
  idPrefix: string;
  object: string;
  chunkObject: string;
  choice(index: number, text: string, finishReason: string | null): object;
  chunkChoice(index: number, text: string, finishReason: string | null, first: boolean): object;
}

const COMPLETIONS: Endpoint = {
  idPrefix: 'cmpl-',
  object: 'text_completion',
  chunkObject: 'text_completion',
  choice: (index, text, finish_reason) => ({ index, text, logprobs: null, finish_reason }),
  chunkChoice: (index, text, finish_reason) => ({ index, text, logprobs: null, finish_reason }),
};

const CHAT: Endpoint = {
  idPrefix: 'chatcmpl-',
  object: 'chat.completion',
  chunkObject: 'chat.completion.chunk',
  choice: (index, content, finish_reason) => ({ index, message: { role: 'assistant', content }, logprobs: null, finish_reason }),
  chunkChoice: (index, content, finish_reason, first) => ({
    index,
    delta: finish_reason !== null ? {} : first ? { role: 'assistant', content } : { content },
    logprobs: null,
    finish_reason,
  }),
};

/**
 * The OpenAI-compatible HTTP API over a scheduler: POST /v1/completions and /v1/chat/completions
 * (JSON or server-sent events), GET /v1/models, /health and /metrics. Errors have OpenAI's shape.
 */
export function buildOpenAiApp(model: Model, scheduler: Scheduler, metrics: ServerMetrics, options: OpenAiAppOptions): FastifyInstance {
  const app = Fastify({ logger: false, forceCloseConnections: 'idle' });
  const created = Math.floor(Date.now() / 1000);
  let stopping = false;

  if (options.corsOrigin !== undefined) {
    // Answers preflights (which carry no credentials) itself, and adds the CORS headers to every answer, errors included.
    app.register(cors, { origin: options.corsOrigin, methods: ['GET', 'POST'], maxAge: 600 });
  }

  app.addHook('onRequest', async (request, reply) => {
    const endpoint = request.routeOptions.url ?? 'unknown';
    reply.raw.once('close', () => metrics.countRequest(endpoint, reply.raw.writableFinished ? String(reply.raw.statusCode) : 'cancelled'));
  });

  // After every onRequest hook (CORS's among them), before the body is read.
  app.addHook('preParsing', async (request) => {
    if (options.apiKey !== undefined && request.url.startsWith('/v1/') && !checkApiKey(request.headers.authorization, options.apiKey)) {
      throw new ApiError(401, 'a valid API key is needed: send the header "Authorization: Bearer <key>"', 'invalid_request_error', 'invalid_api_key');
    }
  });

  app.setErrorHandler((error, _request, reply) => {
    const api = toApiError(error);
    void reply.status(api.status).headers(api.headers).send(api.body());
  });

  app.setNotFoundHandler((request, reply) => {
    const api = new ApiError(404, `no route ${request.method} ${request.url}`, 'invalid_request_error', 'not_found');
    void reply.status(404).send(api.body());
  });

  // Which methods each path takes, so that another method on a known path is 405, not 404.
  const methodsOf = new Map<string, Set<string>>();
  app.addHook('onRoute', (route) => {
    const methods = methodsOf.get(route.url) ?? new Set<string>();
    for (const method of [route.method].flat()) methods.add(method);
    methodsOf.set(route.url, methods);
  });

  const modelCard = { id: options.modelId, object: 'model', created, owned_by: 'chai-attention' };
  app.get('/v1/models', async () => ({ object: 'list', data: [modelCard] }));
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    if (request.params.id !== options.modelId) throw new ApiError(404, `the model '${request.params.id}' does not exist; this server has '${options.modelId}'`, 'invalid_request_error', 'model_not_found', 'model');
    return modelCard;
  });

  app.get('/health', async (_request, reply) => {
    const body = { status: stopping ? 'stopping' : 'ok', model: options.modelId, running: scheduler.runningSequences, queued: scheduler.queueDepth };
    return reply.status(stopping ? 503 : 200).send(body);
  });

  app.get('/metrics', async (_request, reply) => reply.type(metrics.contentType).send(await metrics.text()));

  /**
   * Runs a request through the scheduler, one generation per prompt (choice `index` in prompt
   * order, batched together), and answers it as JSON or as a stream of events.
   */
  async function generate(reply: FastifyReply, endpoint: Endpoint, body: SamplingRequest, prompts: number[][], maxTokens: number | null | undefined, defaultMaxTokens: number, extraStop: readonly string[]): Promise<void> {
    if (body.model !== options.modelId) throw new ApiError(404, `the model '${body.model}' does not exist; this server has '${options.modelId}'`, 'invalid_request_error', 'model_not_found', 'model');
    const context = scheduler.contextTokens;
    for (const prompt of prompts) {
      if (prompt.length >= context) throw invalid(`the prompt has ${prompt.length} tokens; this server's context is ${context} tokens`, 'prompt', 'context_length_exceeded');
      if (maxTokens != null && prompt.length + maxTokens > context) {
        throw invalid(`the prompt (${prompt.length} tokens) and max_tokens (${maxTokens}) pass this server's context of ${context} tokens`, 'max_tokens', 'context_length_exceeded');
      }
    }
    const logitBias = body.logit_bias ?? undefined;
    const outside = Object.keys(logitBias ?? {}).find((id) => Number(id) >= model.info.vocabSize);
    if (outside !== undefined) throw invalid(`logit_bias names token ${outside}, outside the vocabulary (0..${model.info.vocabSize - 1})`, 'logit_bias');
    const stops = (body.stop ?? []).concat(extraStop).filter((s) => s.length > 0);
    const responseFormat = checkedResponseFormat(body.response_format);
    const controller = new AbortController();
    let clientGone = false;
    reply.raw.once('close', () => {
      if (reply.raw.writableFinished) return;
      clientGone = true;
      controller.abort();
    });

    const id = endpoint.idPrefix + randomUUID().replace(/-/g, '');
    const stamp = { id, created: Math.floor(Date.now() / 1000), model: options.modelId };
    const stream = body.stream === true;
    const includeUsage = stream && body.stream_options?.include_usage === true;
    const started = prompts.map(() => false);
    const send = (payload: object): void => {
      if (!reply.raw.destroyed) reply.raw.write(`data: ${JSON.stringify(payload)}\n\n`);
    };
    const chunk = (index: number, text: string, finishReason: string | null): object => ({
      ...stamp,
      object: endpoint.chunkObject,
      choices: [endpoint.chunkChoice(index, text, finishReason, !started[index])],
      ...(includeUsage ? { usage: null } : {}),
    });

    const seed = body.seed ?? Math.floor(Math.random() * 2 ** 32);
    const done: Promise<Generation>[] = [];
    try {
      prompts.forEach((prompt, index) =>
        done.push(
          scheduler.submit({
            prompt,
            maxNewTokens: maxTokens ?? Math.min(defaultMaxTokens, context - prompt.length),
            temperature: body.temperature ?? 1,
            topK: body.top_k ?? 0,
            topP: body.top_p ?? 1,
            seed,
            logitBias,
            minP: body.min_p ?? undefined,
            frequencyPenalty: body.frequency_penalty ?? undefined,
            presencePenalty: body.presence_penalty ?? undefined,
            repeatPenalty: body.repeat_penalty ?? undefined,
            repeatLastN: body.repeat_last_n ?? undefined,
            stop: stops,
            cachePrompt: body.cache_prompt ?? undefined,
            responseFormat,
            signal: controller.signal,
            onText: stream
              ? (text) => {
                  send(chunk(index, text, null));
                  started[index] = true;
                }
              : undefined,
          }),
        ),
      );
    } catch (error) {
      controller.abort(); // the prompts already queued leave with this request
      await Promise.allSettled(done);
      throw error;
    }
    const all = Promise.all(done);
    all.catch(() => controller.abort()); // one choice failed: the others stop too

    if (!stream) {
      let generations: Generation[];
      try {
        generations = await all;
      } catch (error) {
        await Promise.allSettled(done);
        if (clientGone) return reply.hijack(); // nobody to answer
        throw error;
      }
      const choices = generations.map((g, index) => endpoint.choice(index, g.text, g.finishReason));
      return void reply.send({ ...stamp, object: endpoint.object, choices, usage: usageOf(generations) });
    }

    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    try {
      const generations = await Promise.all(done.map((d, index) => d.then((g) => (send(chunk(index, '', g.finishReason)), g))));
      if (includeUsage) send({ ...stamp, object: endpoint.chunkObject, choices: [], usage: usageOf(generations) });
    } catch (error) {
      await Promise.allSettled(done);
      if (!reply.raw.destroyed) send(toApiError(error).body());
    }
    if (!reply.raw.destroyed) reply.raw.end('data: [DONE]\n\n');
  }

  const tokenizer = model.tokenizer;
  app.post('/v1/completions', async (request, reply) => {
    const body = parse(CompletionRequest, request.body);
    const given = body.prompt;
    const texts = typeof given === 'string' ? [given] : given.every((p) => typeof p === 'string') ? (given as string[]) : null;
    const prompts = texts ? texts.map((text) => tokenizer.encode(text, { addBos: tokenizer.addBos })) : typeof given[0] === 'number' ? [given as number[]] : (given as number[][]);
    for (const prompt of prompts) {
      if (prompt.length === 0) throw invalid('the prompt is empty', 'prompt');
      const bad = prompt.find((t) => t >= model.info.vocabSize);
      if (bad !== undefined) throw invalid(`token id ${bad} is outside the vocabulary (0..${model.info.vocabSize - 1})`, 'prompt');
    }
    // OpenAI's default for legacy completions is 16 new tokens.
    await generate(reply, COMPLETIONS, body, prompts, body.max_tokens, 16, []);
  });

  app.post('/v1/chat/completions', async (request, reply) => {
    const body = parse(ChatRequest, request.body);
    const messages: ChatMessage[] = body.messages.map((m) => ({
      role: m.role,
      content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((part) => part.text).join(''),
    }));
    const format = options.chatFormat;
    const prompt = encodeChatPrompt(tokenizer, format.render(messages), format.parseSpecial ?? false);
    await generate(reply, CHAT, body, [prompt], body.max_completion_tokens ?? body.max_tokens, Infinity, format.stop);
  });

  for (const [url, methods] of [...methodsOf]) {
    const allow = [...methods].join(', ');
    app.route({
      method: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'].filter((m) => !methods.has(m)),
      url,
      handler: async (request) => {
        throw new ApiError(405, `${request.method} is not allowed on ${url}: use ${allow}`, 'invalid_request_error', 'method_not_allowed', null, { allow });
      },
    });
  }

  app.addHook('preClose', async () => {
    stopping = true;
  });
  return app;
}
