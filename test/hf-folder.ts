// Turns a llama GGUF file into the Hugging Face folder it was converted from (config.json,
// safetensors with HF tensor names and HF's q/k row order, tokenizer.json), the way
// llama.cpp's convert_hf_to_gguf.py would read it, so tests can compare the two loaders.
import fs from 'node:fs';
import path from 'node:path';
import { fromHalf, loadModel, Metadata, toHalf } from '../lib';
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
}

function roundNorm(data: Uint8Array, norms: NonNullable<HfFolderOptions['norms']>): { dtype: SafetensorsDType; data: Uint8Array } {
  const bytesOf = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  const type = norms.dtype === 'F16' ? 'f16' : 'bf16';
  const half = toHalf(new Float32Array(new Uint8Array(data).buffer), type); // a copy: aligned, and not the whole file
  return norms.widened ? { dtype: 'F32', data: bytesOf(fromHalf(half, type)) } : { dtype: norms.dtype, data: bytesOf(half) };
}

const GGUF_DTYPES: Record<number, SafetensorsDType> = { 0: 'F32', 1: 'F16', 30: 'BF16' };

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

/** The pre-tokenizer split of Llama 3's tokenizer.json (llama.cpp's 'llama-bpe'). */
const LLAMA3_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/** tokenizer.json for a byte-level BPE ('gpt2' / llama-bpe) GGUF vocabulary, as Llama 3 ships it. */
export function llama3TokenizerJson(metadata: Metadata): Record<string, unknown> {
  const tokens = metadata['tokenizer.ggml.tokens'] as string[];
  const types = metadata['tokenizer.ggml.token_type'] as ArrayLike<number>;
  const vocab: Record<string, number> = {};
  const added: Record<string, unknown>[] = [];
  tokens.forEach((t, id) => {
    if (types[id] === 3) added.push({ id, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    else vocab[t] = id;
  });
  const bos = tokens[metadata['tokenizer.ggml.bos_token_id'] as number];
  return {
    version: '1.0',
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: LLAMA3_SPLIT }, behavior: 'Isolated', invert: false }, { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false }] },
    post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true }, { type: 'TemplateProcessing', single: [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] }] },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, fuse_unk: false, byte_fallback: false, ignore_merges: true, vocab, merges: metadata['tokenizer.ggml.merges'] },
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

/** Writes `dir` as the Hugging Face folder of the llama GGUF `ggufPath` (F32/F16/BF16 tensors). */
export async function writeHfFolderFromGguf(ggufPath: string, dir: string, options: HfFolderOptions = {}): Promise<void> {
  const model = await loadModel(ggufPath, { device: 'cpu' });
  const metadata = model.metadata;
  const info = model.info;
  model.dispose();
  const layout = readLayout(ggufPath);
  const tensors: SafetensorsWriteTensor[] = layout.tensors.map((record) => {
    const dims = record.dimsAt.map((at) => Number(layout.bytes.readBigUInt64LE(at)));
    const dtype = GGUF_DTYPES[layout.bytes.readUInt32LE(record.typeAt)];
    if (!dtype) throw new Error(`tensor '${record.name}' is not F32, F16 or BF16`);
    const start = layout.dataStart + Number(layout.bytes.readBigUInt64LE(record.offsetAt));
    const count = dims.reduce((a, b) => a * b, 1);
    let data: Uint8Array = layout.bytes.subarray(start, start + count * (dtype === 'F32' ? 4 : 2));
    if (record.name.endsWith('attn_q.weight')) data = unpermuteRopeRows(data, dims[1], info.heads);
    if (record.name.endsWith('attn_k.weight')) data = unpermuteRopeRows(data, dims[1], info.kvHeads);
    if (dims.length === 1 && options.norms) return { name: hfName(record.name), shape: dims, ...roundNorm(data, options.norms) };
    return { name: hfName(record.name), dtype, shape: [...dims].reverse(), data };
  });

  fs.mkdirSync(dir, { recursive: true });
  const config = {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: info.embeddingLength,
    intermediate_size: info.feedForwardLength,
    num_hidden_layers: info.layers,
    num_attention_heads: info.heads,
    num_key_value_heads: info.kvHeads,
    max_position_embeddings: info.contextLength,
    rms_norm_eps: info.rmsEps,
    rope_theta: info.ropeFreqBase,
    rope_scaling: null,
    vocab_size: info.vocabSize,
    tie_word_embeddings: info.tiedOutput,
    bos_token_id: metadata['tokenizer.ggml.bos_token_id'],
    eos_token_id: metadata['tokenizer.ggml.eos_token_id'],
    torch_dtype: 'float32',
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config, null, 2));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(spmTokenizerJson(metadata)));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }));

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
