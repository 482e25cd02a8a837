import path from 'node:path';
import { ChaiError, callNative, callNativeSync, fromNative, invalidOption, optionsArgument } from './errors';
import { Device, DeviceRequest, resolveDevice } from './device';
import { resolveModelPath } from './models/cache';
import { folderTokenizerMetadata, isModelFolder } from './models/hf-folder';
import { native } from './native';
import { Metadata, Tokenizer, tokenizerFromMetadata } from './tokenizer';
import { ModelInfo, SessionHost } from './model-info';
import { Session, SessionOptions } from './session';

export type { ModelInfo } from './model-info';


export interface TensorInfo {
  name: string;
  /** ggml order: dims[0] is the length of a row. */
  dims: number[];
  type: string;
  bytes: number;
}

export interface LoadProgress {
  stage: 'opening' | 'ready';
  fraction: number;
}

export interface LoadModelOptions {
  /** 'auto' (default), 'cpu' or 'cuda:N'. */
  device?: DeviceRequest;
  /** CPU threads for this model's work (default: all hardware threads). */
  threads?: number;
  /**
   * Element type of the KV cache of this model's sessions: 'f32' (default, exact) or 'f16' (half
   * the bytes; keys and values rounded to nearest on store, computed in f32).
   */
  kvCacheType?: 'f32' | 'f16';
  /**
   * Most bytes of KV cache pages that this model's sessions hold together (default: no cap, the
   * pool grows while memory lasts). An evaluation that would pass the cap fails with E_DEVICE_OOM
   * and leaves its session as it was; `model.kvPool` tells how many pages are free.
   */
  kvCacheBytes?: number;
  onProgress?: (progress: LoadProgress) => void;
}

interface NativeLoaded {
  handle: unknown;
  metadata: Metadata;
  tensors: TensorInfo[];
  version: number;
  config: Omit<ModelInfo, 'architecture' | 'name' | 'ggufVersion' | 'tiedOutput' | 'weightBytes' | 'tensorTypes'>;
  tiedOutput: boolean;
  weightBytes: number;
}

/** The pages of a model's KV cache: one pool that all its sessions draw from. */
export interface KvPoolStats {
  /** Tokens per page; a page holds one KV head's K or V rows of one layer. */
  pageTokens: number;
  pageBytes: number;
  pagesInUse: number;
  /** The cap set by kvCacheBytes, in pages; null when the pool has no cap. */
  pagesTotal: number | null;
  /** pagesTotal − pagesInUse; null when the pool has no cap. */
  pagesFree: number | null;
}

export interface KvPool {
  stats(): KvPoolStats;
  /**
   * Pages that a session holding `tokens` tokens takes at most: K and V of every KV head in every
   * layer (CHAI sessions take fewer once their clusters are chosen, never more).
   */
  pagesFor(tokens: number): number;
}

/** What the model's prefix cache holds and how often it served (sessions with prefixCache). */
export interface PrefixCacheStats {
  /** Requests that looked for a cached prefix. */
  lookups: number;
  /** ... and found one. */
  hits: number;
  /** Prompt tokens looked up, and those found cached. */
  lookupTokens: number;
  hitTokens: number;
  /** hitTokens / lookupTokens (0 before any lookup). */
  hitRate: number;
  /** Cached pages of tokens (16 tokens each), and the KV pages they hold (also counted in kvPool.stats().pagesInUse). */
  cachedBlocks: number;
  cachedPages: number;
  /** KV pages freed by eviction so far. */
  evictedPages: number;
}

export interface PrefixCache {
  stats(): PrefixCacheStats;
  /** Drops every cached prefix (pages that sessions still hold stay theirs). */
  clear(): void;
}

interface NativeKvPoolInfo {
  pageTokens: number;
  pageBytes: number;
  pagesInUse: number;
  capacityPages: number;
  maxPages: number;
}

interface PendingEvaluation {
  session: unknown;
  tokens: Int32Array;
  allLogits: boolean;
  resolve: (logits: Float32Array) => void;
  reject: (error: unknown) => void;
}

/** A LLaMA-family model loaded from a GGUF file or a Hugging Face folder. Weights are memory-mapped, not copied. */
export class Model implements SessionHost {
  readonly info: ModelInfo;
  readonly tokenizer: Tokenizer;
  readonly metadata: Readonly<Metadata>;
  readonly tensors: readonly TensorInfo[];
  readonly kvPool: KvPool;
  /** The KV pages of prompts computed by sessions created with prefixCache, for later requests to reuse. */
  readonly prefixCache: PrefixCache;
  private handle: unknown;
  private waiting: PendingEvaluation[] = [];
  private running = false;

  /** @internal use loadModel() */
  constructor(
    readonly path: string,
    readonly device: Device,
    loaded: NativeLoaded,
  ) {
    this.handle = loaded.handle;
    this.metadata = loaded.metadata;
    this.tensors = loaded.tensors;
    this.tokenizer = tokenizerFromMetadata(loaded.metadata);
    const tensorTypes: Record<string, number> = {};
    for (const t of loaded.tensors) tensorTypes[t.type] = (tensorTypes[t.type] ?? 0) + 1;
    const name = loaded.metadata['general.name'];
    this.info = {
      architecture: String(loaded.metadata['general.architecture']),
      name: typeof name === 'string' ? name : null,
      ggufVersion: loaded.version,
      ...loaded.config,
      tiedOutput: loaded.tiedOutput,
      weightBytes: loaded.weightBytes,
      tensorTypes,
    };
    this.kvPool = {
      stats: () => {
        const p = callNativeSync(() => native().kvPoolInfo(this.nativeHandle())) as NativeKvPoolInfo;
        const total = p.maxPages > 0 ? p.maxPages : null;
        return { pageTokens: p.pageTokens, pageBytes: p.pageBytes, pagesInUse: p.pagesInUse, pagesTotal: total, pagesFree: total === null ? null : total - p.pagesInUse };
      },
      pagesFor: (tokens) => Math.ceil(tokens / this.kvPool.stats().pageTokens) * this.info.layers * this.info.kvHeads * 2,
    };
    this.prefixCache = {
      stats: () => {
        const p = callNativeSync(() => native().prefixCacheInfo(this.nativeHandle()));
        return {
          lookups: p.lookups,
          hits: p.hits,
          lookupTokens: p.lookupTokens,
          hitTokens: p.hitTokens,
          hitRate: p.lookupTokens > 0 ? p.hitTokens / p.lookupTokens : 0,
          cachedBlocks: p.nodes,
          cachedPages: p.pages,
          evictedPages: p.evictedPages,
        };
      },
      clear: () => callNativeSync(() => native().clearPrefixCache(this.nativeHandle())),
    };
  }

  /** @internal the native handle, for sessions */
  nativeHandle(): unknown {
    if (this.handle === undefined) throw new ChaiError('E_INVALID_ARGUMENT', 'the model has been disposed');
    return this.handle;
  }

  /**
   * @internal Sessions' evaluations go through here: while one batch runs, the requests that
   * arrive wait and then run together as the next batch (one forward pass, weights read once).
   */
  evaluateBatched(session: unknown, tokens: Int32Array, allLogits: boolean): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ session, tokens, allLogits, resolve, reject });
      if (!this.running) setImmediate(() => this.runBatch());
    });
  }

  private runBatch(): void {
    if (this.running || this.waiting.length === 0) return;
    const batch = this.waiting;
    this.waiting = [];
    this.running = true;
    const done = (): void => {
      this.running = false;
      this.runBatch();
    };
    let results: Promise<(Float32Array | { code: string; message: string })[]>;
    try {
      results = native().evaluateBatch(
        batch.map((b) => b.session),
        batch.map((b) => b.tokens),
        batch.map((b) => b.allLogits),
      );
    } catch (error) {
      batch.forEach((b) => b.reject(fromNative(error)));
      done();
      return;
    }
    results.then(
      (out) => {
        // isView, not instanceof: the arrays may come from another realm (e.g. under jest).
        out.forEach((r, i) => (ArrayBuffer.isView(r) ? batch[i].resolve(r as Float32Array) : batch[i].reject(fromNative(r))));
        done();
      },
      (error: unknown) => {
        batch.forEach((b) => b.reject(fromNative(error)));
        done();
      },
    );
  }

  /** A new sequence over this model with its own KV cache. */
  createSession(options: SessionOptions = {}): Session {
    return new Session(this, options);
  }

  /** Releases the model's native memory once its sessions are disposed too. */
  dispose(): void {
    if (this.handle === undefined) return;
    native().disposeModel(this.handle);
    this.handle = undefined;
  }
}

/**
 * Loads a model: a GGUF file (F32, F16, BF16, Q8_0 and the Q4_0 .. Q6_K, IQ4_NL, IQ4_XS quantized
 * tensors), a Hugging Face folder (config.json, *.safetensors in F32/F16/BF16, tokenizer.json), or
 * a name pulled before with `chai-attn pull` (hf:owner/repo/file.gguf or a URL; E_MODEL_NOT_FOUND
 * if not pulled yet). Everything is checked before use; a corrupt or truncated file rejects with
 * E_MODEL_FORMAT and a message naming the problem.
 */
export async function loadModel(modelPath: string, options: LoadModelOptions = {}): Promise<Model> {
  if (typeof modelPath !== 'string' || modelPath.length === 0) {
    throw new ChaiError('E_INVALID_ARGUMENT', 'loadModel needs the path of a .gguf file or a Hugging Face folder, or a pulled model name');
  }
  optionsArgument(options, 'loadModel');
  const request = options.device ?? 'auto';
  // The engine's forward pass runs on the CPU backend; 'auto' therefore means the CPU for models.
  const device: Device = request === 'auto' ? 'cpu' : resolveDevice(request).device;
  const threads = options.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0) {
    throw invalidOption('threads', `must be a positive integer (or 0 for all), got ${String(options.threads)}`);
  }
  const kvCacheType = options.kvCacheType ?? 'f32';
  if (kvCacheType !== 'f32' && kvCacheType !== 'f16') {
    throw invalidOption('kvCacheType', `must be 'f32' or 'f16', got ${JSON.stringify(options.kvCacheType)}`);
  }
  const kvCacheBytes = options.kvCacheBytes ?? 0;
  if (!Number.isSafeInteger(kvCacheBytes) || kvCacheBytes < 0) {
    throw invalidOption('kvCacheBytes', `must be a whole number of bytes >= 0 (0: no cap), got ${options.kvCacheBytes}`);
  }
  options.onProgress?.({ stage: 'opening', fraction: 0 });
  const absolute = path.resolve(resolveModelPath(modelPath));
  // A folder's tokenizer comes from tokenizer.json; read it first, so a bad one fails before the weights are mapped.
  const tokenizerMetadata = isModelFolder(absolute) ? folderTokenizerMetadata(absolute) : undefined;
  const loaded = await callNative(() => native().loadModel(absolute, device, threads, kvCacheType, kvCacheBytes) as Promise<NativeLoaded>);
  if (tokenizerMetadata) Object.assign(loaded.metadata, tokenizerMetadata);
  const model = new Model(absolute, device, loaded);
  options.onProgress?.({ stage: 'ready', fraction: 1 });
  return model;
}
