import { writeGguf, GgufWriteTensor, GgufWriteValue } from './gguf-writer';

/** Shape of a random-weight LLaMA model for benchmarks and tests. */
export interface SyntheticLlamaConfig {
  layers: number;
  embeddingLength: number;
  heads: number;
  kvHeads: number;
  feedForwardLength: number;
  /** At least 259: <unk>, <s>, </s> and 256 byte tokens come first. */
  vocabSize: number;
  weights?: 'F32' | 'F16';
  seed?: number;
  /**
   * Heads in planted groups: heads h and g with plantedGroups[h] === plantedGroups[g] get identical
   * Q and K projection rows, so their attention scores are equal at every position. Needs
   * kvHeads === heads (each head has its own keys).
   */
  plantedGroups?: number[][];
  /** Multiplies the Q and K projections (sharper attention patterns). Default 1. */
  attentionScale?: number;
  /** Multiplies the output projection (more confident next-token distributions). Default 1. */
  logitScale?: number;
  /** Metadata entries added to (or replacing) the generated ones, e.g. to write a malformed file. */
  metadata?: Record<string, GgufWriteValue>;
  /** Tensors written after the generated ones (tests of tensors a loader must refuse). */
  extraTensors?: GgufWriteTensor[];
  /** general.architecture and the prefix of its metadata keys (default 'llama'; 'mistral' has the same tensors). */
  architecture?: string;
}

function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32 - 0.5;
  };
}

/**
 * Writes a LLaMA-architecture GGUF with random weights (scaled so activations stay O(1)) and a
 * byte-level SentencePiece vocabulary. Its text is noise; its shapes and arithmetic are real.
 */
export function writeSyntheticLlama(file: string, c: SyntheticLlamaConfig): void {
  const rnd = random(c.seed ?? 1);
  const headDim = c.embeddingLength / c.heads;
  const type = c.weights ?? 'F32';
  const matrix = (name: string, cols: number, rows: number, edit?: (data: Float32Array) => void, gain = 1): GgufWriteTensor => {
    const data = new Float32Array(cols * rows);
    const scale = (2 * gain) / Math.sqrt(cols);
    for (let i = 0; i < data.length; i++) data[i] = rnd() * scale;
    edit?.(data);
    return { name, dims: [cols, rows], type, data };
  };
  const ones = (name: string, n: number): GgufWriteTensor => ({ name, dims: [n], type: 'F32', data: new Float32Array(n).fill(1) });
  // Copy the first head's projection rows of each planted group to the others in it.
  const plant = (data: Float32Array): void => {
    for (const group of c.plantedGroups ?? []) {
      const [first, ...rest] = group;
      for (const h of rest) data.copyWithin(h * headDim * c.embeddingLength, first * headDim * c.embeddingLength, (first + 1) * headDim * c.embeddingLength);
    }
  };

  const tensors: GgufWriteTensor[] = [matrix('token_embd.weight', c.embeddingLength, c.vocabSize), ones('output_norm.weight', c.embeddingLength)];
  tensors.push(matrix('output.weight', c.embeddingLength, c.vocabSize, undefined, c.logitScale ?? 1));
  for (let l = 0; l < c.layers; l++) {
    const p = `blk.${l}.`;
    tensors.push(
      ones(`${p}attn_norm.weight`, c.embeddingLength),
      matrix(`${p}attn_q.weight`, c.embeddingLength, c.heads * headDim, plant, c.attentionScale ?? 1),
      matrix(`${p}attn_k.weight`, c.embeddingLength, c.kvHeads * headDim, plant, c.attentionScale ?? 1),
      matrix(`${p}attn_v.weight`, c.embeddingLength, c.kvHeads * headDim),
      matrix(`${p}attn_output.weight`, c.heads * headDim, c.embeddingLength),
      ones(`${p}ffn_norm.weight`, c.embeddingLength),
      matrix(`${p}ffn_gate.weight`, c.embeddingLength, c.feedForwardLength),
      matrix(`${p}ffn_up.weight`, c.embeddingLength, c.feedForwardLength),
      matrix(`${p}ffn_down.weight`, c.feedForwardLength, c.embeddingLength),
    );
  }
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
  }
  for (let i = tokens.length; i < c.vocabSize; i++) {
    tokens.push(`\u2581t${i}`);
    types.push(1);
  }
  const arch = c.architecture ?? 'llama';
  const metadata: Record<string, GgufWriteValue> = {
    'general.architecture': { type: 'string', value: arch },
    'general.name': { type: 'string', value: 'synthetic' },
    [`${arch}.block_count`]: { type: 'u32', value: c.layers },
    [`${arch}.embedding_length`]: { type: 'u32', value: c.embeddingLength },
    [`${arch}.feed_forward_length`]: { type: 'u32', value: c.feedForwardLength },
    [`${arch}.attention.head_count`]: { type: 'u32', value: c.heads },
    [`${arch}.attention.head_count_kv`]: { type: 'u32', value: c.kvHeads },
    [`${arch}.context_length`]: { type: 'u32', value: 4096 },
    [`${arch}.attention.layer_norm_rms_epsilon`]: { type: 'f32', value: 1e-5 },
    'tokenizer.ggml.model': { type: 'string', value: 'llama' },
    'tokenizer.ggml.tokens': { type: 'string[]', value: tokens },
    'tokenizer.ggml.scores': { type: 'f32[]', value: new Float32Array(tokens.length) },
    'tokenizer.ggml.token_type': { type: 'i32[]', value: types },
    'tokenizer.ggml.bos_token_id': { type: 'u32', value: 1 },
    'tokenizer.ggml.eos_token_id': { type: 'u32', value: 2 },
  };
  writeGguf(file, { ...metadata, ...c.metadata }, [...tensors, ...(c.extraTensors ?? [])]);
}
