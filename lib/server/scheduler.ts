import { ChaiError, invalidOption } from '../errors';
import type { Model } from '../model';
import type { ClusterPlan } from '../plan';
import { SamplingOptions, TokenSampler } from '../sampling';
import type { Session } from '../session';
import { StopStrings } from '../stop-strings';
import { compileResponseFormat, ResponseFormat } from '../structured/schema';
import { JsonConstraint } from '../structured/token-mask';
import { StreamingDecoder } from '../tokenizer';

export interface SchedulerOptions {
  /** Most sequences in the running batch. Default 16. */
  maxConcurrent?: number;
  /** Most requests waiting for a place in the batch; past it submit() throws queue_full. Default 64. */
  maxQueue?: number;
  /**
   * Prompt tokens evaluated per step, over all sequences still reading their prompts. A long prompt
   * is read in chunks of at most this many tokens, interleaved with the other sequences' decoding,
   * so it does not stall them for its whole length. Default 256, at least 32.
   */
  prefillTokensPerStep?: number;
  /** Most tokens (prompt + generated) one sequence may hold. Default min(model context, 4096). */
  contextTokens?: number;
  /** CHAI for every sequence: a plan, 'auto' (resolved once, as sessions resolve it) or 'off'. */
  chai?: ClusterPlan | 'auto' | 'off';
  /**
   * Prefix caching (default true): sequences keep their computed KV pages in the model's prefix
   * cache, and a request whose prompt starts like an earlier one reads those instead of computing
   * them (SessionOptions.prefixCache). Cached pages live under the KV cap and are evicted least
   * recently used when an admitted request needs room.
   */
  prefixCache?: boolean;
  /** Timings and counts for metrics. */
  observer?: SchedulerObserver;
}

export interface SchedulerObserver {
  promptTokens?(count: number): void;
  generatedTokens?(count: number): void;
  /** Prompt tokens of a request that came from the prefix cache (once per request, when it starts). */
  cachedTokens?(count: number): void;
  /** Seconds from submit() to the first generated token of a request. */
  firstToken?(seconds: number): void;
  /** Seconds between two generated tokens of one request. */
  interToken?(seconds: number): void;
  /** Sequences evaluated together in one step. */
  step?(sequences: number, tokens: number): void;
}

/** A generation as the server asks for it: SamplingOptions (penalties, minP, logitBias) with these given. */
export interface GenerationRequest extends SamplingOptions {
  /** Token ids of the prompt (BOS included when the model wants it). */
  prompt: readonly number[];
  /** Most tokens to generate; the sequence also stops when it fills contextTokens. */
  maxNewTokens: number;
  /** 0 = greedy. */
  temperature: number;
  /** 0 = all tokens. */
  topK: number;
  topP: number;
  seed: number;
  /** Strings that end the generation; the text stops before the first one. */
  stop?: readonly string[];
  /** Whether this request may read from the prefix cache and add to it (llama-server's cache_prompt). Default true. */
  cachePrompt?: boolean;
  /** JSON output, as generate()'s responseFormat: the generation stops ('stop') when the value is complete. */
  responseFormat?: ResponseFormat;
  /** Cancels the request: it leaves the queue at once, or the batch before the next step. */
  signal?: AbortSignal;
  /** Text as it is generated; never a part of a stop string; joined it equals the final text. */
  onText?(text: string): void;
}

export type GenerationFinish = 'stop' | 'length';

export interface Generation {
  text: string;
  promptTokens: number;
  /** Prompt tokens read from the prefix cache instead of computed. */
  cachedTokens: number;
  completionTokens: number;
  /** 'stop': an end-of-generation token, a stop string or a complete JSON value; 'length': maxNewTokens or the context. */
  finishReason: GenerationFinish;
}

export type SchedulerErrorCode = 'queue_full' | 'too_large' | 'shutting_down';

/** A request the scheduler refuses before it is queued. */
export class SchedulerError extends Error {
  constructor(
    readonly code: SchedulerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'SchedulerError';
  }
}

interface Sequence {
  request: GenerationRequest;
  /** KV pages this sequence may come to hold, set aside at admission. */
  pages: number;
  maxTokens: number;
  submitted: number;
  resolve(generation: Generation): void;
  reject(error: unknown): void;
  onAbort?: () => void;
  // Set once it runs:
  session?: Session;
  fed: number;
  lastToken: number;
  generated: number;
  lastTokenAt: number;
  sampler: TokenSampler;
  /** The structured-output mask, when the request asked for JSON. */
  json: JsonConstraint | null;
  decoder?: StreamingDecoder;
  stops: StopStrings;
  text: string;
  /** Set by close() when the grace period ends: the sequence leaves before the next step. */
  cancelled?: unknown;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('the request was cancelled', 'AbortError');
}

/**
 * Continuous batching over one model: a single loop in which every running sequence advances by
 * one step (a chunk of its prompt, or one generated token) and all of them are evaluated together
 * in one forward pass (the model batches sessions that evaluate at the same time). Requests join
 * between steps and leave when done, each with its own session (its own CHAI clusters); its KV
 * pages come from the model's pool and return when it ends.
 *
 * Admission is by pages: a request enters the batch only when the pages it may come to hold (K and
 * V of every KV head for prompt + maxNewTokens tokens) fit beside those set aside for the running
 * ones, so a capped pool (loadModel's kvCacheBytes) never runs out mid-generation: pages that only
 * the prefix cache holds are evicted to make room. Queued requests are admitted in arrival order.
 * With prefix caching, a request starts from the cached pages of its prompt's longest cached
 * prefix and reads only the rest.
 */
export class Scheduler {
  readonly maxConcurrent: number;
  readonly maxQueue: number;
  readonly prefillTokensPerStep: number;
  readonly contextTokens: number;
  readonly prefixCache: boolean;
  private readonly chai: ClusterPlan | 'off';
  private readonly observer: SchedulerObserver;
  private readonly queue: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private reservedPages = 0;
  private looping = false;
  private closing = false;
  private idle: (() => void)[] = [];

  constructor(
    readonly model: Model,
    options: SchedulerOptions = {},
  ) {
    const positive = (name: string, value: number, least = 1): number => {
      if (!Number.isInteger(value) || value < least) throw invalidOption(name, `must be an integer >= ${least}, got ${value}`);
      return value;
    };
    this.maxConcurrent = positive('maxConcurrent', options.maxConcurrent ?? 16);
    this.maxQueue = positive('maxQueue', options.maxQueue ?? 64, 0);
    // A first chunk of at least min(prompt, 32) tokens lets CHAI cluster a prompt before its attention (t0 <= 32).
    this.prefillTokensPerStep = positive('prefillTokensPerStep', options.prefillTokensPerStep ?? 256, 32);
    this.contextTokens = positive('contextTokens', options.contextTokens ?? Math.min(model.info.contextLength, 4096));
    if (this.contextTokens > model.info.contextLength) {
      throw invalidOption('contextTokens', `must be at most the model's context length (${model.info.contextLength}), got ${this.contextTokens}`);
    }
    this.observer = options.observer ?? {};
    if (options.prefixCache !== undefined && typeof options.prefixCache !== 'boolean') throw invalidOption('prefixCache', `must be true or false, got ${String(options.prefixCache)}`);
    this.prefixCache = options.prefixCache ?? true;
    const chai = options.chai ?? 'off';
    if (chai === 'auto') {
      // Whatever 'auto' means for a session, resolved once so that every request uses the same plan.
      const probe = model.createSession({ chai: 'auto', maxTokens: 1 });
      this.chai = probe.plan ?? 'off';
      void probe.dispose();
    } else {
      // A plan for another model shape is refused here, before a server listens, not per request.
      if (chai !== 'off') chai.checkFits(model.info);
      this.chai = chai;
    }
    const pool = model.kvPool.stats();
    if (pool.pagesTotal !== null && model.kvPool.pagesFor(1) > pool.pagesTotal) {
      throw new ChaiError('E_INVALID_ARGUMENT', `the KV cache cap holds ${pool.pagesTotal} pages, less than one token needs (${model.kvPool.pagesFor(1)}): raise it`);
    }
  }

  /** The plan every sequence uses, or null for full attention. */
  get plan(): ClusterPlan | null {
    return this.chai === 'off' ? null : this.chai;
  }

  get queueDepth(): number {
    return this.queue.length;
  }

  get runningSequences(): number {
    return this.running.length;
  }

  /** Pages set aside for the running sequences (what admission counts). */
  get pagesReserved(): number {
    return this.reservedPages;
  }

  /** KV bytes that CHAI saves right now, over the running sequences. */
  kvBytesSaved(): number {
    let saved = 0;
    for (const s of this.running) if (s.session) saved += s.session.cache.stats().bytesSaved;
    return saved;
  }

  /**
   * Queues a generation. Throws SchedulerError when the queue is full, when the request could never
   * fit the KV cache cap, or after close(); the promise rejects with the signal's reason when the
   * request is cancelled, or with a ChaiError when the engine fails it.
   */
  submit(request: GenerationRequest): Promise<Generation> {
    if (this.closing) throw new SchedulerError('shutting_down', 'the server is shutting down');
    if (request.prompt.length === 0) throw new ChaiError('E_INVALID_ARGUMENT', 'the prompt is empty');
    if (!Number.isInteger(request.maxNewTokens) || request.maxNewTokens < 0) {
      throw new ChaiError('E_INVALID_ARGUMENT', `maxNewTokens must be an integer >= 0, got ${request.maxNewTokens}`);
    }
    const sampler = new TokenSampler(request, this.model.info.vocabSize, request.prompt);
    const grammar = compileResponseFormat(request.responseFormat);
    const stops = new StopStrings(request.stop);
    const maxTokens = Math.min(this.contextTokens, request.prompt.length + request.maxNewTokens);
    if (request.prompt.length >= this.contextTokens) {
      throw new ChaiError('E_CONTEXT_OVERFLOW', `the prompt has ${request.prompt.length} tokens; this server's context is ${this.contextTokens}`);
    }
    // A request that starts inside a cached page copies that page before writing it: one page of tokens more.
    const pages = this.model.kvPool.pagesFor(this.caches(request) ? maxTokens + this.model.kvPool.stats().pageTokens : maxTokens);
    const total = this.model.kvPool.stats().pagesTotal;
    if (total !== null && pages > total) {
      throw new SchedulerError('too_large', `the request may hold ${maxTokens} tokens (${pages} KV pages) but the KV cache holds ${total} pages: ask for fewer tokens`);
    }
    request.signal?.throwIfAborted();
    let settle: Pick<Sequence, 'resolve' | 'reject'> | undefined;
    const done = new Promise<Generation>((resolve, reject) => (settle = { resolve, reject }));
    const seq: Sequence = {
      ...settle!,
      request,
      pages,
      maxTokens,
      submitted: performance.now(),
      fed: 0,
      lastToken: -1,
      generated: 0,
      lastTokenAt: 0,
      sampler,
      json: grammar && JsonConstraint.forTokenizer(grammar, this.model.tokenizer),
      stops,
      text: '',
    };
    this.queue.push(seq);
    this.admit();
    if (this.queue.length > this.maxQueue) {
      this.queue.pop();
      throw new SchedulerError('queue_full', `${this.maxQueue} requests are already waiting (maxQueue); retry later`);
    }
    if (request.signal && this.queue.includes(seq)) {
      seq.onAbort = () => {
        const at = this.queue.indexOf(seq);
        if (at < 0) return; // running: it leaves before the next step
        this.queue.splice(at, 1);
        this.settle(seq, abortError(request.signal!));
        this.notifyIdle();
      };
      request.signal.addEventListener('abort', seq.onAbort, { once: true });
    }
    this.wake();
    return done;
  }

  /**
   * Stops accepting requests and resolves once the queue and the batch are empty. After graceMs
   * (default: wait for all) the requests still queued or running are cancelled.
   */
  async close(graceMs?: number): Promise<void> {
    this.closing = true;
    const done = this.whenIdle();
    if (graceMs === undefined) return done;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((r) => (timer = setTimeout(() => r('expired'), graceMs)));
    if ((await Promise.race([done, expired])) === 'expired') {
      const cancelled = new SchedulerError('shutting_down', 'the server shut down before the request finished');
      for (const seq of this.queue.splice(0)) this.settle(seq, cancelled);
      for (const seq of this.running) seq.cancelled = cancelled;
      await done;
    }
    clearTimeout(timer);
  }

  private whenIdle(): Promise<void> {
    if (this.queue.length === 0 && this.running.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private notifyIdle(): void {
    if (this.queue.length > 0 || this.running.length > 0) return;
    for (const resolve of this.idle.splice(0)) resolve();
  }

  private caches(request: GenerationRequest): boolean {
    return this.prefixCache && request.cachePrompt !== false;
  }

  private canAdmit(pages: number): boolean {
    if (this.running.length >= this.maxConcurrent) return false;
    const total = this.model.kvPool.stats().pagesTotal;
    return total === null || this.reservedPages + pages <= total;
  }

  private admit(): void {
    while (this.queue.length > 0 && this.canAdmit(this.queue[0].pages)) {
      const seq = this.queue.shift()!;
      try {
        const prefixCache = this.caches(seq.request);
        seq.session = this.model.createSession({ maxTokens: seq.maxTokens, chai: this.chai, prefixCache });
        if (prefixCache) seq.fed = seq.session.reusePrefix(seq.request.prompt);
      } catch (error) {
        void seq.session?.dispose();
        this.settle(seq, error);
        continue;
      }
      seq.decoder = new StreamingDecoder(this.model.tokenizer);
      this.reservedPages += seq.pages;
      this.running.push(seq);
      this.observer.promptTokens?.(seq.request.prompt.length);
      this.observer.cachedTokens?.(seq.fed);
    }
  }

  private wake(): void {
    if (this.looping) return;
    this.looping = true;
    // After the current I/O phase, so that requests arriving together start in the same first step.
    setImmediate(() => void this.loop());
  }

  private async loop(): Promise<void> {
    try {
      for (;;) {
        this.admit();
        if (this.running.length === 0) break;
        await this.step();
      }
    } finally {
      this.looping = false;
      this.notifyIdle();
    }
  }

  /** One forward pass over the batch: prompt chunks and single decode tokens side by side. */
  private async step(): Promise<void> {
    for (const seq of [...this.running]) {
      const signal = seq.request.signal;
      if (seq.cancelled) await this.finish(seq, seq.cancelled);
      else if (signal?.aborted) await this.finish(seq, abortError(signal));
    }
    const work: { seq: Sequence; tokens: number[] }[] = [];
    let budget = this.prefillTokensPerStep;
    for (const seq of this.running) {
      const prompt = seq.request.prompt;
      if (seq.fed < prompt.length) {
        const n = Math.min(prompt.length - seq.fed, budget);
        // The first chunk is whole or >= 32 tokens, so CHAI can cluster the prompt before its attention.
        if (n === 0 || (seq.fed === 0 && n < Math.min(prompt.length, 32))) continue;
        work.push({ seq, tokens: prompt.slice(seq.fed, seq.fed + n) });
        budget -= n;
      } else {
        work.push({ seq, tokens: [seq.lastToken] });
      }
    }
    if (work.length === 0) return;
    this.observer.step?.(work.length, work.reduce((n, w) => n + w.tokens.length, 0));
    // Evaluations started in the same tick run as one batch (Model batches concurrent sessions).
    const results = await Promise.allSettled(work.map((w) => w.seq.session!.evaluate(w.tokens)));
    for (let i = 0; i < work.length; i++) {
      const { seq, tokens } = work[i];
      const result = results[i];
      if (result.status === 'rejected') {
        await this.finish(seq, result.reason);
        continue;
      }
      seq.fed += seq.fed < seq.request.prompt.length ? tokens.length : 0;
      if (seq.fed < seq.request.prompt.length) continue;
      const finish = this.accept(seq, result.value);
      if (finish) await this.finish(seq, finish);
    }
  }

  /** Samples the next token from the logits and hands out its text; returns how it ends, if it does. */
  private accept(seq: Sequence, logits: Float32Array): GenerationFinish | null {
    const { request } = seq;
    if (request.maxNewTokens === 0) return 'length';
    const token = seq.sampler.next(logits, seq.json ?? undefined);
    if (this.model.tokenizer.isEndOfGeneration(token)) return 'stop';
    seq.json?.accept(token);
    const now = performance.now();
    if (seq.generated === 0) this.observer.firstToken?.((now - seq.submitted) / 1000);
    else this.observer.interToken?.((now - seq.lastTokenAt) / 1000);
    seq.lastTokenAt = now;
    seq.generated++;
    seq.lastToken = token;
    this.observer.generatedTokens?.(1);

    const { text, stopped } = seq.stops.push(seq.decoder!.push(token));
    this.emit(seq, text);
    if (stopped || seq.json?.done) return 'stop';
    if (seq.generated >= request.maxNewTokens) return 'length';
    if (request.prompt.length + seq.generated >= seq.maxTokens) return 'length';
    return null;
  }

  private emit(seq: Sequence, text: string): void {
    if (text.length === 0) return;
    seq.text += text;
    seq.request.onText?.(text);
  }

  /** Takes a sequence out of the batch and frees its pages; resolves or rejects its request. */
  private async finish(seq: Sequence, outcome: GenerationFinish | unknown): Promise<void> {
    this.running.splice(this.running.indexOf(seq), 1);
    this.reservedPages -= seq.pages;
    await seq.session?.dispose();
    if (outcome === 'stop' || outcome === 'length') {
      // What was held back for a stop string that never came, and any incomplete character, is text too.
      this.emit(seq, seq.stops.flush() + seq.decoder!.flush());
      this.settle(seq, null, { text: seq.text, promptTokens: seq.request.prompt.length, cachedTokens: seq.session?.cachedTokens ?? 0, completionTokens: seq.generated, finishReason: outcome });
    } else {
      this.settle(seq, outcome);
    }
  }

  private settle(seq: Sequence, error: unknown, generation?: Generation): void {
    if (seq.onAbort) seq.request.signal?.removeEventListener('abort', seq.onAbort);
    if (generation) seq.resolve(generation);
    else seq.reject(error);
  }
}
