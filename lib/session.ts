import { ChaiError, callNative, callNativeSync, invalidOption, optionsArgument } from './errors';
import { native } from './native';
import type { SessionHost } from './model-info';
import { ClusterPlan } from './plan';
import { loadCachedPlan } from './plan-cache';
import { SamplingOptions, TokenSampler, validateSampling } from './sampling';
import { StopStrings } from './stop-strings';
import { compileResponseFormat, ResponseFormat } from './structured/schema';
import { JsonConstraint } from './structured/token-mask';
import { StreamingDecoder } from './tokenizer';

export interface SessionOptions {
  /** Most tokens (prompt + generated) the session holds, at most the model's context. Default: min(model context, 4096). */
  maxTokens?: number;
  /**
   * Clustered head attention: a ClusterPlan; 'auto', the plan cached for this model file (see
   * autoPlan(); without one the session runs full attention, says so in `chaiSource` and emits a
   * warning: createSession never calibrates); or 'off' (full attention; the default).
   */
  chai?: ClusterPlan | 'auto' | 'off';
  /**
   * Prefix caching (default false): the whole KV pages (16 tokens each) this session computes are
   * kept in the model's prefix cache after it moves on or is disposed, and a new request on this
   * session (the first evaluate() or generate() after creation or reset()) starts from the cached
   * pages of the longest prefix of its prompt that any opted-in session of the model computed with
   * the same cluster plan (with CHAI: at least t0 tokens, whose clusters it takes too). The result
   * is the same as without the cache, up to float rounding. Cached pages count against the model's
   * kvCacheBytes and are evicted least recently used when a session needs room; without a cap they
   * stay until `model.prefixCache.clear()` or the model is disposed.
   */
  prefixCache?: boolean;
}

/** Where a session's attention comes from. */
export type ChaiSource = 'off' | 'plan' | 'cached' | 'auto-uncalibrated';

/** Heads of one clustered layer: membership[h] is h's cluster, representatives[c] its scoring head. */
export interface Assignment {
  membership: number[];
  representatives: number[];
}

const warnedUncalibrated = new Set<string>();

function resolvePlan(model: SessionHost, chai: SessionOptions['chai']): { plan: ClusterPlan | null; source: ChaiSource } {
  if (chai === undefined || chai === 'off') return { plan: null, source: 'off' };
  if (chai === 'auto') {
    const plan = loadCachedPlan(model.path);
    if (plan) {
      plan.checkFits(model.info);
      return { plan, source: 'cached' };
    }
    if (!warnedUncalibrated.has(model.path)) {
      warnedUncalibrated.add(model.path);
      process.emitWarning(
        `chai: 'auto' found no cluster plan cached for ${model.path}; running full attention. ` +
          "Calibrate one with 'chai-attn calibrate --model FILE' or await autoPlan(model).",
        { code: 'CHAI_UNCALIBRATED' },
      );
    }
    return { plan: null, source: 'auto-uncalibrated' };
  }
  if (!(chai instanceof ClusterPlan)) {
    throw invalidOption('chai', "must be a ClusterPlan, 'auto' or 'off'");
  }
  chai.checkFits(model.info);
  return { plan: chai, source: 'plan' };
}

export interface GenerateOptions extends SamplingOptions {
  /** Stop after this many new tokens. Default 256. */
  maxNewTokens?: number;
  /** Stops generation between tokens; the iterator then throws the signal's reason. */
  signal?: AbortSignal;
  /** Strings that end the generation: the text stops before the first one to appear (finishReason 'stopString'). */
  stop?: readonly string[];
  /**
   * OpenAI's response_format: `{ type: 'json_object' }` or `{ type: 'json_schema', json_schema: { name,
   * schema } }` masks every token that would break the JSON before sampling; the generation ends
   * (finishReason 'endOfGeneration') once the value is complete. Run out of maxNewTokens first and
   * the text is not complete JSON. Default `{ type: 'text' }`.
   */
  responseFormat?: ResponseFormat;
}

export interface GeneratedToken {
  token: number;
  /** The text this token completes (may be '' while a UTF-8 character is still incomplete). */
  text: string;
}

export type FinishReason = 'maxNewTokens' | 'endOfGeneration' | 'contextFull' | 'stopString';

export interface GenerationResult {
  promptTokens: number[];
  tokens: number[];
  text: string;
  finishReason: FinishReason;
  /** Seconds spent evaluating the prompt and generating, measured around the native calls. */
  prefillSeconds: number;
  decodeSeconds: number;
  /** Single-token evaluations that decodeSeconds covers. */
  decodeSteps: number;
  /** Prompt tokens taken from the prefix cache rather than computed (0 without prefixCache). */
  cachedTokens: number;
}

export interface CacheStats {
  /** Tokens whose keys and values are cached. */
  tokens: number;
  kBytes: number;
  vBytes: number;
  /** What a full cache (K and V for every KV head) would hold for the same tokens. */
  kBytesFull: number;
  vBytesFull: number;
  /** kBytesFull + vBytesFull − kBytes − vBytes */
  bytesSaved: number;
}

/**
 * Token ids as the engine takes them: integers in [0, vocabSize). Anything else (fractions, strings,
 * ids past the vocabulary, values an Int32Array would wrap) is refused rather than coerced.
 */
function tokenIds(tokens: unknown, vocabSize: number, what: string): number[] {
  if (!Array.isArray(tokens) && !(tokens instanceof Int32Array)) {
    throw new ChaiError('E_INVALID_ARGUMENT', `${what} must be an array of token ids (or an Int32Array), got ${tokens === null ? 'null' : typeof tokens}`);
  }
  const list = Array.from(tokens as ArrayLike<unknown>);
  list.forEach((id, i) => {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw new ChaiError('E_INVALID_ARGUMENT', `${what}[${i}] = ${JSON.stringify(id) ?? String(id)} is not a token id: ids are integers in [0, ${vocabSize})`);
    }
  });
  return list as number[];
}

interface NativeSessionInfo {
  nPast: number;
  maxTokens: number;
  kBytes: number;
  vBytes: number;
  kBytesFull: number;
  vBytesFull: number;
}

/**
 * One sequence over a model: its tokens so far and their KV cache. Calls are serialised: a call
 * made while another runs waits for it. An open generate() holds the session until its iterator
 * finishes (or is closed with return(), as `break` in for-await does): other calls made meanwhile
 * are rejected with E_SESSION_BUSY rather than queued, since they would change the sequence under it.
 */
export class Session {
  readonly maxTokens: number;
  /** The cluster plan in use, or null for full attention. */
  readonly plan: ClusterPlan | null;
  /**
   * Where the attention comes from: 'off' (full attention asked for), 'plan' (a plan given),
   * 'cached' ('auto' found this model's cached plan) or 'auto-uncalibrated' ('auto' found none:
   * full attention).
   */
  readonly chaiSource: ChaiSource;
  readonly cache: { stats(): CacheStats };
  /** Whether this session uses the model's prefix cache (SessionOptions.prefixCache). */
  readonly prefixCache: boolean;
  private handle: unknown;
  private history: number[] = [];
  private cached = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private generating = false;

  /** @internal use model.createSession() */
  constructor(
    readonly model: SessionHost,
    options: SessionOptions,
  ) {
    optionsArgument(options, 'createSession');
    const context = model.info.contextLength;
    let maxTokens = options.maxTokens ?? Math.min(context, 4096);
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > context) {
      throw invalidOption('maxTokens', `must be an integer in 1..${context} (the model's context length), got ${String(options.maxTokens)}`);
    }
    const window = model.info.slidingWindow;
    if (window > 0 && maxTokens > window) {
      // Attention limited to `window` tokens is full attention while the context fits in the window.
      process.emitWarning(
        `the model attends over a sliding window of ${window} tokens; this session holds at most ${window} tokens (asked ${maxTokens})`,
        { code: 'CHAI_SLIDING_WINDOW' },
      );
      maxTokens = window;
    }
    this.maxTokens = maxTokens;
    const { plan, source } = resolvePlan(model, options.chai);
    this.plan = plan;
    this.chaiSource = source;
    if (options.prefixCache !== undefined && typeof options.prefixCache !== 'boolean') {
      throw invalidOption('prefixCache', `must be true or false, got ${String(options.prefixCache)}`);
    }
    this.prefixCache = options.prefixCache ?? false;
    this.handle = callNativeSync(() => native().createSession(model.nativeHandle(), maxTokens, plan?.native, this.prefixCache));
    this.cache = { stats: () => this.stats() };
  }

  /** Tokens evaluated so far (prompt and generated). */
  get tokens(): readonly number[] {
    return this.history;
  }

  /** Tokens of the current request that came from the prefix cache (0 when none did). */
  get cachedTokens(): number {
    return this.cached;
  }

  /**
   * For callers that evaluate a prompt in pieces (a server reading it in chunks): starts this empty
   * session from the prefix cache's longest cached prefix of the whole `prompt` (at most all but
   * its last token) and returns how many tokens that is; evaluate the rest, `prompt.slice(n)`.
   * evaluate() and generate() do this themselves when a request starts. Needs prefixCache.
   */
  reusePrefix(prompt: readonly number[] | Int32Array): number {
    this.notBusy('reusePrefix()');
    if (!this.prefixCache) throw invalidOption('prefixCache', 'must be true for reusePrefix(): create the session with prefixCache: true');
    if (this.history.length > 0) {
      throw new ChaiError('E_INVALID_ARGUMENT', `reusePrefix() starts a request, but the session holds ${this.history.length} tokens: reset() it first`);
    }
    return this.adoptPrefix(tokenIds(prompt, this.model.info.vocabSize, 'prompt'));
  }

  private adoptPrefix(prompt: number[]): number {
    const n = callNativeSync(() => native().reusePrefix(this.live(), Int32Array.from(prompt)));
    this.history.push(...prompt.slice(0, n));
    this.cached = n;
    return n;
  }

  /**
   * Evaluates tokens; when they start a request on a prefix-caching session (and only the last
   * logits are asked for), from the prefix cache as far as it goes. A failed evaluation leaves
   * the session as it was, cached tokens included.
   */
  private async runRequest(tokens: number[], allLogits: boolean): Promise<Float32Array> {
    if (allLogits || !this.prefixCache || this.history.length > 0) return this.run(tokens, allLogits);
    const n = this.adoptPrefix(tokens);
    try {
      return await this.run(tokens.slice(n), false);
    } catch (error) {
      if (n > 0) {
        callNativeSync(() => native().rewind(this.live(), 0));
        this.history.length = 0;
        this.cached = 0;
      }
      throw error;
    }
  }

  private live(): unknown {
    if (this.handle === undefined) throw new ChaiError('E_INVALID_ARGUMENT', 'the session has been disposed');
    return this.handle;
  }

  private notBusy(call: string): void {
    if (this.generating) {
      throw new ChaiError('E_SESSION_BUSY', `${call} was called while a generate() on this session is still open: finish or return() its iterator first, or use another session`);
    }
  }

  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work, work);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async run(tokens: number[], allLogits: boolean): Promise<Float32Array> {
    const handle = this.live();
    if (this.history.length + tokens.length > this.maxTokens) {
      throw new ChaiError(
        'E_CONTEXT_OVERFLOW',
        `${this.history.length} + ${tokens.length} tokens pass this session's maxTokens (${this.maxTokens}): use a larger maxTokens or a shorter prompt`,
        { option: 'maxTokens' },
      );
    }
    const logits = await this.model.evaluateBatched(handle, Int32Array.from(tokens), allLogits);
    this.history.push(...tokens);
    return logits;
  }

  /**
   * Appends tokens to the sequence and returns the logits after the last one
   * (Float32Array[vocabSize]), or after every one with allLogits ([tokens.length × vocabSize]).
   * With prefixCache, an evaluation that starts a request without allLogits reads what it can
   * from the prefix cache (see cachedTokens).
   */
  evaluate(tokens: readonly number[] | Int32Array, options: { allLogits?: boolean } = {}): Promise<Float32Array> {
    try {
      this.notBusy('evaluate()');
      const list = tokenIds(tokens, this.model.info.vocabSize, 'tokens');
      if (list.length === 0) throw new ChaiError('E_INVALID_ARGUMENT', 'evaluate needs at least one token');
      const allLogits = Boolean(optionsArgument(options, 'evaluate').allLogits ?? false);
      return this.serial(() => this.runRequest(list, allLogits));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Streams the continuation of `prompt` (text, or token ids) token by token. The prompt is added
   * to what the session already holds (BOS first when the session is empty and the model wants it).
   * The iterator's return value is a GenerationResult.
   */
  async *generate(prompt: string | readonly number[], options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, GenerationResult> {
    this.notBusy('generate()');
    this.generating = true;
    try {
      return yield* this.generateTokens(prompt, optionsArgument(options, 'generate'));
    } finally {
      this.generating = false;
    }
  }

  private async *generateTokens(prompt: string | readonly number[], options: GenerateOptions): AsyncGenerator<GeneratedToken, GenerationResult> {
    validateSampling(options, this.model.info.vocabSize); // before the prompt is evaluated
    const grammar = compileResponseFormat(options.responseFormat);
    const stops = new StopStrings(options.stop);
    const maxNewTokens = options.maxNewTokens ?? 256;
    if (!Number.isInteger(maxNewTokens) || maxNewTokens < 0) {
      throw invalidOption('maxNewTokens', `must be an integer >= 0, got ${String(options.maxNewTokens)}`);
    }
    const tokenizer = this.model.tokenizer;
    const promptTokens =
      typeof prompt === 'string'
        ? tokenizer.encode(prompt, { addBos: this.history.length === 0 && tokenizer.addBos })
        : tokenIds(prompt, this.model.info.vocabSize, 'prompt');
    if (promptTokens.length === 0) throw new ChaiError('E_INVALID_ARGUMENT', 'the prompt is empty');
    options.signal?.throwIfAborted();

    // Built before the prompt's timing starts: the first use of a vocabulary prepares it (seconds for 128k tokens).
    const json = grammar && JsonConstraint.forTokenizer(grammar, tokenizer);
    const decoder = new StreamingDecoder(tokenizer);
    const generated: number[] = [];
    let text = '';
    let start = performance.now();
    const fresh = this.history.length === 0;
    let logits = await this.serial(() => this.runRequest(promptTokens, false));
    const cachedTokens = fresh ? this.cached : 0;
    const sampler = new TokenSampler(options, this.model.info.vocabSize, this.history);
    const prefillSeconds = (performance.now() - start) / 1000;
    let decodeSeconds = 0;
    let decodeSteps = 0;
    let finishReason: FinishReason = 'maxNewTokens';
    while (generated.length < maxNewTokens) {
      options.signal?.throwIfAborted();
      const token = sampler.next(logits, json ?? undefined);
      if (tokenizer.isEndOfGeneration(token)) {
        finishReason = 'endOfGeneration';
        break;
      }
      json?.accept(token);
      generated.push(token);
      const piece = stops.push(decoder.push(token));
      text += piece.text;
      yield { token, text: piece.text };
      if (piece.stopped) {
        finishReason = 'stopString';
        break;
      }
      if (json?.done) {
        // The JSON value is complete and nothing may follow: an end token is all the mask would allow.
        finishReason = 'endOfGeneration';
        break;
      }
      if (generated.length === maxNewTokens) break;
      if (this.history.length >= this.maxTokens) {
        finishReason = 'contextFull';
        break;
      }
      start = performance.now();
      logits = await this.serial(() => this.run([token], false));
      decodeSeconds += (performance.now() - start) / 1000;
      decodeSteps++;
    }
    if (finishReason !== 'stopString') text += stops.flush() + decoder.flush();
    return { promptTokens, tokens: generated, text, finishReason, prefillSeconds, decodeSeconds, decodeSteps, cachedTokens };
  }

  /** Forgets every token from position `tokens` on (default: all). */
  reset(tokens = 0): Promise<void> {
    try {
      this.notBusy('reset()');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.serial(async () => {
      if (!Number.isInteger(tokens) || tokens < 0 || tokens > this.history.length) {
        throw new ChaiError('E_INVALID_ARGUMENT', `reset(${tokens}): the session holds ${this.history.length} tokens`);
      }
      await callNative(() => native().rewind(this.live(), tokens));
      this.history.length = tokens;
      if (tokens === 0) this.cached = 0;
    });
  }

  /**
   * The clusters of a layer: null while it is not clustered (full attention, a layer the plan
   * keeps whole, or fewer than t0 tokens so far). Fixed for the rest of the request once chosen.
   */
  assignment(layer: number): Assignment | null {
    return callNativeSync(() => native().assignment(this.live(), layer));
  }

  /** @internal calibration: K-Means inertia curves of one window's first t0 tokens, [layers × heads] */
  windowInertia(tokens: readonly number[], t0: number, seed: number, restarts: number): Promise<Float64Array> {
    this.notBusy('windowInertia()');
    return this.serial(() => callNative(() => native().windowInertia(this.live(), Int32Array.from(tokens), t0, seed, restarts)));
  }

  private stats(): CacheStats {
    const s = callNativeSync(() => native().sessionInfo(this.live())) as NativeSessionInfo;
    return {
      tokens: s.nPast,
      kBytes: s.kBytes,
      vBytes: s.vBytes,
      kBytesFull: s.kBytesFull,
      vBytesFull: s.vBytesFull,
      bytesSaved: s.kBytesFull + s.vBytesFull - s.kBytes - s.vBytes,
    };
  }

  /** Frees the session's cache pages. Waits for a running call to finish first. */
  async dispose(): Promise<void> {
    await this.queue;
    if (this.handle === undefined) return;
    native().disposeSession(this.handle);
    this.handle = undefined;
  }
}
