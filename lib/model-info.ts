// What sessions, plans and calibration need to know of a model, apart from the Model class, so
// that model.ts, session.ts and plan.ts do not import each other.
import type { Tokenizer } from './tokenizer';

export interface ModelInfo {
  architecture: string;
  name: string | null;
  /** The GGUF version of the file; 0 for a Hugging Face folder. */
  ggufVersion: number;
  layers: number;
  embeddingLength: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  feedForwardLength: number;
  vocabSize: number;
  /** The context length the model was trained with (metadata). */
  contextLength: number;
  ropeFreqBase: number;
  /** Which elements RoPE rotates together: 'normal' pairs (2i, 2i+1) or 'neox' halves (i, i + headDim/2). */
  ropeStyle: 'normal' | 'neox';
  /** Tokens a position attends to at most (0: no window). Sessions hold at most this many tokens. */
  slidingWindow: number;
  rmsEps: number;
  /** The output projection reuses the token embedding. */
  tiedOutput: boolean;
  /** Bytes of tensor data memory-mapped from the file. */
  weightBytes: number;
  /** How many tensors of each storage type, e.g. { F32: 11, Q8_0: 36, F16: 5 }. */
  tensorTypes: Record<string, number>;
}

/** The shape a cluster plan is made for. */
export type ModelShape = Pick<ModelInfo, 'layers' | 'heads' | 'kvHeads' | 'headDim'>;

/** @internal What a Session uses of its model (the Model class implements it). */
export interface SessionHost {
  readonly path: string;
  readonly info: ModelInfo;
  readonly tokenizer: Tokenizer;
  nativeHandle(): unknown;
  evaluateBatched(session: unknown, tokens: Int32Array, allLogits: boolean): Promise<Float32Array>;
}
