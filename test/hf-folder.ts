// Turns a llama, qwen2 or qwen3 GGUF file into the Hugging Face folder it was converted from
// (config.json, safetensors with HF tensor names and HF's q/k row order, tokenizer.json and
// tokenizer_config.json), the way llama.cpp's convert_hf_to_gguf.py would read it, so tests can
// compare the two loaders.
import fs from 'node:fs';
import path from 'node:path';
import { fromHalf, loadModel, Metadata, Model, toHalf } from '../lib';
import { SafetensorsDType, SafetensorsWriteTensor, writeSafetensors } from '../lib/safetensors-writer';
import { readLayout } from './gguf-layout';

export interface HfFolderOptions {
  /** Split the weights over this many files with a model.safetensors.index.json (default 1). */
  shards?: number;
  /**
   * Round the (F32) norm weights to this half type, as half-precision checkpoints store them;
   * `widened` writes the rounded values back as F32.
   */
  norms?: { dtype: 'F16' | 'BF16'; widened?: boolean };
  /**
   * config.json's rope_scaling, required when the GGUF has rope_freqs.weight (a folder holds the
   * scaling's parameters, from which the loader computes those factors, not the factors).
   */
  ropeScaling?: Record<string, unknown>;
  /** Write the RoPE base and scaling inside rope_parameters, as transformers 5 does. */
  ropeParameters?: boolean;
}

function roundNorm(data: Uint8Array, norms: NonNullable<HfFolderOptions['norms']>): { dtype: SafetensorsDType; data: Uint8Array } {
  const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const type = norms.dtype === 'F16' ? 'f16' : 'bf16';
  const half = toHalf(new Float32Array(new Uint8Array(data).buffer), type); // a copy: aligned, and not the whole file
  return norms.widened ? { dtype: 'F32', data: bytesOf(fromHalf(half, type)) } : { dtype: norms.dtype, data: bytesOf(half) };
}

const GGUF_DTYPES: Record<number, SafetensorsDType> = { 0: 'F32', 1: 'F16', 30: 'BF16' };
const GGUF_TYPE_CODES: Record<SafetensorsDType, number> = { F32: 0, F16: 1, BF16: 30 };
const GGUF_Q8_0 = 8;

const LAYER_NAMES: Record<string, string> = {
  'attn_norm.weight': 'input_layernorm.weight',
  'attn_q.weight': 'self_attn.q_proj.weight',
  'attn_k.weight': 'self_attn.k_proj.weight',
  'attn_v.weight': 'self_attn.v_proj.weight',
  'attn_output.weight': 'self_attn.o_proj.weight',
  'ffn_norm.weight': 'post_attention_layernorm.weight',
  'ffn_gate.weight': 'mlp.gate_proj.weight',
  'ffn_up.weight': 'mlp.up_proj.weight',
  'ffn_down.weight': 'mlp.down_proj.weight',
  'attn_q.bias': 'self_attn.q_proj.bias', // qwen2
  'attn_k.bias': 'self_attn.k_proj.bias',
  'attn_v.bias': 'self_attn.v_proj.bias',
  'attn_q_norm.weight': 'self_attn.q_norm.weight', // qwen3
  'attn_k_norm.weight': 'self_attn.k_norm.weight',
};
const GLOBAL_NAMES: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output_norm.weight': 'model.norm.weight',
  'output.weight': 'lm_head.weight',
};

export function hfName(gguf: string): string {
  const layer = /^blk\.(\d+)\.(.+)$/.exec(gguf);
  const name = layer ? LAYER_NAMES[layer[2]] && `model.layers.${layer[1]}.${LAYER_NAMES[layer[2]]}` : GLOBAL_NAMES[gguf];
  if (!name) throw new Error(`no Hugging Face name for '${gguf}'`);
  return name;
}

/** GGUF's adjacent-pair q/k rows back to HF's half-split order (the inverse of llama.cpp's permute). */
export function unpermuteRopeRows(data: Uint8Array, rows: number, heads: number): Uint8Array {
  const rowBytes = data.length / rows;
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Uint8Array(data.length);
  for (let h = 0; h < heads; h++) {
    for (let p = 0; p < half; p++) {
      for (let j = 0; j < 2; j++) {
        const from = (h * headDim + 2 * p + j) * rowBytes;
        out.set(data.subarray(from, from + rowBytes), (h * headDim + j * half + p) * rowBytes);
      }
    }
  }
  return out;
}

/**
 * tokenizer.json for a SentencePiece ('llama') GGUF vocabulary, as Hugging Face's LlamaConverter
 * writes one: BPE with byte fallback, merges = every split of every piece into two pieces,
 * ordered by the joined piece's score.
 */
export function spmTokenizerJson(metadata: Metadata): Record<string, unknown> {
  const tokens = metadata['tokenizer.ggml.tokens'] as string[];
  const scores = metadata['tokenizer.ggml.scores'] as Float64Array;
  const types = metadata['tokenizer.ggml.token_type'] as Float64Array;
  const vocab: Record<string, number> = {};
  tokens.forEach((t, id) => (vocab[t] = id));
  const merges: { left: string; right: string; score: number; ids: [number, number] }[] = [];
  tokens.forEach((piece, id) => {
    if (types[id] !== 1) return; // normal pieces only
    const chars = Array.from(piece);
    for (let i = 1; i < chars.length; i++) {
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      if (left in vocab && right in vocab) merges.push({ left, right, score: scores[id], ids: [vocab[left], vocab[right]] });
    }
  });
  merges.sort((a, b) => b.score - a.score || a.ids[0] - b.ids[0] || a.ids[1] - b.ids[1]);
  const special = (id: number): Record<string, unknown> => ({ id, content: tokens[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  return {
    version: '1.0',
    added_tokens: [special(0), special(1), special(2)],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: tokens[1], type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] },
    decoder: { type: 'Sequence', decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
    model: { type: 'BPE', dropout: null, unk_token: tokens[0], continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges: merges.map((m) => [m.left, m.right]) },
  };
}

/** The pre-tokenizer splits of the tokenizer.json files of Llama 3 and Qwen2/3, by `tokenizer.ggml.pre`. */
const BYTE_LEVEL_SPLITS: Record<string, string> = {
  'llama-bpe': "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

/**
 * tokenizer.json for a byte-level BPE ('gpt2') GGUF vocabulary, as Llama 3 and Qwen ship it:
 * control tokens are special added tokens, user-defined ones (Qwen's `<think>`) added tokens that
 * are not special, and the UNUSED `[PAD<i>]` padding is left out (config.json's vocab_size covers
 * it). Qwen's files normalize to NFC and add no BOS; Llama 3's add BOS by a template.
 */
export function byteLevelTokenizerJson(metadata: Metadata): Record<string, unknown> {
  const tokens = metadata['tokenizer.ggml.tokens'] as string[];
  const types = metadata['tokenizer.ggml.token_type'] as ArrayLike<number>;
  const pre = metadata['tokenizer.ggml.pre'] as string;
  const split = BYTE_LEVEL_SPLITS[pre];
  if (!split) throw new Error(`no tokenizer.json split pattern for pre-tokenizer '${pre}'`);
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((t, id) => {
    if (types[id] === 3 || types[id] === 4) added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: types[id] === 3 });
    else if (types[id] !== 5) vocab[t] = id;
  });
  const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
  const addBos = metadata['tokenizer.ggml.add_bos_token'] === true;
  const bos = tokens[metadata['tokenizer.ggml.bos_token_id'] as number];
  const template = { type: 'TemplateProcessing', single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] };
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: split }, behavior: 'Isolated', invert: false }, byteLevel] },
    post_processor: addBos ? { type: 'Sequence', processors: [byteLevel, template] } : byteLevel,
    decoder: byteLevel,
    model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, ignore_merges: pre !== 'qwen2', vocab, merges: metadata['tokenizer.ggml.merges'] },
  };
}

/** The metadata of a GGUF file, read in TypeScript (no model is loaded). */
export function readGgufMetadata(file: string): Metadata {
  const layout = readLayout(file);
  const b = layout.bytes;
  const metadata: Metadata = {};
  for (const kv of layout.kvs) {
    let at = kv.valueAt;
    const str = (): string => {
      const n = Number(b.readBigUInt64LE(at));
      at += 8;
      return b.subarray(at, (at += n)).toString('utf8');
    };
    const scalar = (type: number): number | boolean | string => {
      const readers: Record<number, () => number | boolean | string> = {
        0: () => b.readUInt8(at), 1: () => b.readInt8(at), 2: () => b.readUInt16LE(at), 3: () => b.readInt16LE(at),
        4: () => b.readUInt32LE(at), 5: () => b.readInt32LE(at), 6: () => b.readFloatLE(at), 7: () => b.readUInt8(at) === 1,
        10: () => Number(b.readBigUInt64LE(at)), 11: () => Number(b.readBigInt64LE(at)), 12: () => b.readDoubleLE(at),
      };
      if (type === 8) return str();
      const v = readers[type]();
      at += { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 }[type]!;
      return v;
    };
    const type = b.readUInt32LE(kv.typeAt);
    if (type !== 9) {
      metadata[kv.key] = scalar(type);
      continue;
    }
    const inner = b.readUInt32LE(at);
    const n = Number(b.readBigUInt64LE(at + 4));
    at += 12;
    const items = Array.from({ length: n }, () => scalar(inner));
    metadata[kv.key] = inner === 8 ? (items as string[]) : Float64Array.from(items as number[]);
  }
  return metadata;
}

/** The values of a GGUF tensor of `count` elements: F32, F16, BF16, or Q8_0 blocks (which widen exactly). */
function tensorValues(data: Uint8Array, type: number, count: number): Float32Array {
  const copy = new Uint8Array(data); // aligned
  if (type === 0) return new Float32Array(copy.buffer);
  if (type === 1 || type === 30) return fromHalf(new Uint16Array(copy.buffer), type === 1 ? 'f16' : 'bf16');
  if (type !== GGUF_Q8_0) throw new Error(`GGUF tensor type ${type} is not F32, F16, BF16 or Q8_0`);
  // A Q8_0 block: an F16 scale, then 32 signed bytes.
  const blocks = count / 32;
  const view = Buffer.from(copy.buffer);
  const quants = new Int8Array(copy.buffer);
  const scales = fromHalf(Uint16Array.from({ length: blocks }, (_, b) => view.readUInt16LE(34 * b)), 'f16');
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = scales[i >> 5] * quants[34 * (i >> 5) + 2 + (i & 31)];
  return out;
}

/**
 * Copies the GGUF file `src` to `dst` with each tensor stored as `typeOf(name, dims)` (F32, F16 or
 * BF16) and the metadata unchanged: the GGUF that a Hugging Face folder of those types converts
 * to, for files (such as Q8_0 ones) whose types a folder cannot hold.
 */
export function writeGgufWithFloatTensors(src: string, dst: string, typeOf: (name: string, dims: number[]) => SafetensorsDType): void {
  const layout = readLayout(src);
  const header = Buffer.from(layout.bytes.subarray(0, layout.dataStart));
  const parts: Uint8Array[] = [header];
  let offset = 0;
  for (const record of layout.tensors) {
    const dims = record.dimsAt.map((at) => Number(layout.bytes.readBigUInt64LE(at)));
    const count = dims.reduce((a, b) => a * b, 1);
    const type = layout.bytes.readUInt32LE(record.typeAt);
    const bytes = { 0: 4 * count, 1: 2 * count, 30: 2 * count, [GGUF_Q8_0]: (34 * count) / 32 }[type];
    if (bytes === undefined) throw new Error(`tensor '${record.name}' has GGUF type ${type}`);
    const start = layout.dataStart + Number(layout.bytes.readBigUInt64LE(record.offsetAt));
    const values = tensorValues(layout.bytes.subarray(start, start + bytes), type, count);
    const target = typeOf(record.name, dims);
    const data = target === 'F32' ? values : toHalf(values, target === 'F16' ? 'f16' : 'bf16');
    header.writeUInt32LE(GGUF_TYPE_CODES[target], record.typeAt);
    header.writeBigUInt64LE(BigInt(offset), record.offsetAt);
    const padded = Math.ceil(data.byteLength / 32) * 32; // the default general.alignment
    const out = new Uint8Array(padded);
    out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    parts.push(out);
    offset += padded;
  }
  fs.writeFileSync(dst, Buffer.concat(parts));
}

/** Writes `dir` as the Hugging Face folder of the llama, qwen2 or qwen3 GGUF `ggufPath` (F32/F16/BF16 tensors). */
export async function writeHfFolderFromGguf(ggufPath: string, dir: string, options: HfFolderOptions = {}): Promise<void> {
  const model = await loadModel(ggufPath, { device: 'cpu' });
  const metadata = model.metadata;
  const info = model.info;
  model.dispose();
  const layout = readLayout(ggufPath);
  const ropeFreqs = layout.tensors.some((record) => record.name === 'rope_freqs.weight');
  if (ropeFreqs && !options.ropeScaling) throw new Error(`${ggufPath} has rope_freqs.weight: pass the ropeScaling it came from`);
  const tensors: SafetensorsWriteTensor[] = layout.tensors.filter((record) => record.name !== 'rope_freqs.weight').map((record) => {
    const dims = record.dimsAt.map((at) => Number(layout.bytes.readBigUInt64LE(at)));
    const dtype = GGUF_DTYPES[layout.bytes.readUInt32LE(record.typeAt)];
    if (!dtype) throw new Error(`tensor '${record.name}' is not F32, F16 or BF16`);
    const start = layout.dataStart + Number(layout.bytes.readBigUInt64LE(record.offsetAt));
    const count = dims.reduce((a, b) => a * b, 1);
    let data: Uint8Array = layout.bytes.subarray(start, start + count * (dtype === 'F32' ? 4 : 2));
    // HF's q/k rows are in rotate_half order, which NeoX RoPE (qwen) keeps and GGUF llama permutes.
    if (info.ropeStyle === 'normal' && record.name.endsWith('attn_q.weight')) data = unpermuteRopeRows(data, dims[1], info.heads);
    if (info.ropeStyle === 'normal' && record.name.endsWith('attn_k.weight')) data = unpermuteRopeRows(data, dims[1], info.kvHeads);
    if (dims.length === 1 && options.norms) return { name: hfName(record.name), shape: dims, ...roundNorm(data, options.norms) };
    return { name: hfName(record.name), dtype, shape: [...dims].reverse(), data };
  });

  fs.mkdirSync(dir, { recursive: true });
  const qwen = info.architecture === 'qwen2' || info.architecture === 'qwen3';
  const config = {
    architectures: [{ llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM', qwen3: 'Qwen3ForCausalLM' }[info.architecture]],
    model_type: info.architecture,
    hidden_act: 'silu',
    hidden_size: info.embeddingLength,
    intermediate_size: info.feedForwardLength,
    num_hidden_layers: info.layers,
    num_attention_heads: info.heads,
    num_key_value_heads: info.kvHeads,
    head_dim: info.headDim,
    max_position_embeddings: info.contextLength,
    rms_norm_eps: info.rmsEps,
    ...(options.ropeParameters
      ? { rope_parameters: { rope_theta: info.ropeFreqBase, ...(options.ropeScaling ?? { rope_type: 'default' }) } }
      : { rope_theta: info.ropeFreqBase, rope_scaling: options.ropeScaling ?? null }),
    vocab_size: info.vocabSize,
    tie_word_embeddings: info.tiedOutput,
    bos_token_id: metadata['tokenizer.ggml.bos_token_id'],
    eos_token_id: metadata['tokenizer.ggml.eos_token_id'],
    torch_dtype: 'float32',
    // What Qwen2.5 / Qwen3 configs write: a window that no layer uses.
    ...(qwen ? { use_sliding_window: false, sliding_window: info.contextLength, max_window_layers: info.layers, attention_dropout: 0 } : {}),
    ...(info.architecture === 'qwen3' ? { attention_bias: false } : {}),
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  const tokens = metadata['tokenizer.ggml.tokens'] as string[];
  const chatTemplate = metadata['tokenizer.chat_template'];
  const template = typeof chatTemplate === 'string' ? { chat_template: chatTemplate } : {};
  if (metadata['tokenizer.ggml.model'] === 'gpt2') {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(byteLevelTokenizerJson(metadata)));
    const addBos = metadata['tokenizer.ggml.add_bos_token'] === true;
    const bos = tokens[metadata['tokenizer.ggml.bos_token_id'] as number];
    const eos = tokens[metadata['tokenizer.ggml.eos_token_id'] as number];
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ add_bos_token: addBos, bos_token: addBos ? bos : null, eos_token: eos, ...template }));
  } else {
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(spmTokenizerJson(metadata)));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', ...template }));
  }

  const shards = options.shards ?? 1;
  if (shards === 1) {
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
    return;
  }
  const weightMap: Record<string, string> = {};
  for (let s = 0; s < shards; s++) {
    const file = `model-${String(s + 1).padStart(5, '0')}-of-${String(shards).padStart(5, '0')}.safetensors`;
    const part = tensors.filter((_, i) => i % shards === s);
    part.forEach((t) => (weightMap[t.name] = file));
    writeSafetensors(path.join(dir, file), part, { format: 'pt' });
  }
  const totalSize = tensors.reduce((n, t) => n + t.data.length, 0);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2));
}

/** `n` greedy tokens after `prompt`, and the logits after the last of them. */
export async function greedy(model: Model, prompt: string, n: number): Promise<{ tokens: number[]; lastLogits: Float32Array }> {
  const session = model.createSession({ maxTokens: 128 });
  const tokens: number[] = [];
  let context = model.tokenizer.encode(prompt);
  let logits = await session.evaluate(context);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let v = 1; v < logits.length; v++) if (logits[v] > logits[best]) best = v;
    tokens.push(best);
    context = [best];
    logits = await session.evaluate(context);
  }
  await session.dispose();
  return { tokens, lastLogits: logits };
}
