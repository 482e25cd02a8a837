// Hugging Face folders (config.json + safetensors + tokenizer.json) against the GGUF they convert
// to: the folders are written here from ../shared/models/stories260K.gguf with HF names, HF's q/k
// row order and a tokenizer.json, and must compute what the GGUF computes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, Model, modelFileHash } from '../lib';
import { writeSafetensors } from '../lib/safetensors-writer';
import { relativeError } from './helpers';
import { greedy, unpermuteRopeRows, writeHfFolderFromGguf } from './hf-folder';

const SHARED = path.join(__dirname, '..', '..', 'shared');
const GGUF = path.join(SHARED, 'models', 'stories260K.gguf');
const prompts = fs.readFileSync(path.join(SHARED, 'golden', 'prompts.txt'), 'utf8').split('\n').filter((l) => l.length > 0);
const tokenizeCases = fs
  .readFileSync(path.join(SHARED, 'golden', 'tokenize-cases.txt'), 'utf8')
  .split('\n')
  .filter((l) => l.length > 0)
  .map((l) => JSON.parse(l) as string);

let dir: string;
let gguf: Model;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-hf-'));
  await writeHfFolderFromGguf(GGUF, path.join(dir, 'single'));
  await writeHfFolderFromGguf(GGUF, path.join(dir, 'sharded'), { shards: 3 });
  gguf = await loadModel(GGUF, { device: 'cpu' });
});
afterAll(() => {
  gguf.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe.each(['single', 'sharded'])('a %s-file Hugging Face folder of stories260K', (variant) => {
  let folder: Model;
  beforeAll(async () => {
    folder = await loadModel(path.join(dir, variant), { device: 'cpu' });
  });
  afterAll(() => folder.dispose());

  test('has the hyperparameters and tensors of the GGUF', () => {
    const { ggufVersion, name, weightBytes, ...rest } = folder.info;
    const { ggufVersion: _v, name: _n, weightBytes: ggufBytes, ...expected } = gguf.info;
    expect(ggufVersion).toBe(0);
    expect(name).toBe(variant);
    expect(rest).toEqual(expected);
    expect(weightBytes).toBe(ggufBytes);
    const byName = (m: Model) => Object.fromEntries(m.tensors.map((t) => [t.name, [t.dims, t.type]]));
    expect(byName(folder)).toEqual(byName(gguf));
  });

  test('tokenizes like the GGUF (tokenizer.json -> the same SentencePiece tokenizer)', () => {
    expect(folder.tokenizer.kind).toBe('llama');
    expect(folder.tokenizer.bos).toBe(gguf.tokenizer.bos);
    expect(folder.tokenizer.eos).toBe(gguf.tokenizer.eos);
    for (const text of [...prompts, ...tokenizeCases]) {
      expect(folder.tokenizer.encode(text)).toEqual(gguf.tokenizer.encode(text));
      const ids = gguf.tokenizer.encode(text);
      expect(folder.tokenizer.decode(ids)).toBe(gguf.tokenizer.decode(ids));
    }
  });

  test.each(prompts.slice(0, 3))('greedy 32 tokens and the last logits equal the GGUF\'s: "%s"', async (prompt) => {
    const ours = await greedy(folder, prompt, 32);
    const reference = await greedy(gguf, prompt, 32);
    expect(ours.tokens).toEqual(reference.tokens);
    expect(relativeError(ours.lastLogits, reference.lastLogits)).toBeLessThan(1e-5);
  });
});

test("a folder's content hash (which keys its cached CHAI plan) covers its config and weights", () => {
  const single = modelFileHash(path.join(dir, 'single'));
  expect(single).toMatch(/^[0-9a-f]{64}$/);
  expect(modelFileHash(path.join(dir, 'single'))).toBe(single);
  expect(modelFileHash(path.join(dir, 'sharded'))).not.toBe(single);
});

describe('half-precision folders', () => {
  test('F16 matrices map in place and compute what the F16 GGUF computes', async () => {
    const folderPath = path.join(dir, 'f16');
    await writeHfFolderFromGguf(path.join(SHARED, 'models', 'stories260K-f16.gguf'), folderPath);
    const [folder, reference] = await Promise.all([loadModel(folderPath, { device: 'cpu' }), loadModel(path.join(SHARED, 'models', 'stories260K-f16.gguf'), { device: 'cpu' })]);
    expect(folder.info.tensorTypes).toEqual(reference.info.tensorTypes);
    const [ours, theirs] = [await greedy(folder, prompts[0], 32), await greedy(reference, prompts[0], 32)];
    expect(ours.tokens).toEqual(theirs.tokens);
    expect(relativeError(ours.lastLogits, theirs.lastLogits)).toBeLessThan(1e-5);
    folder.dispose();
    reference.dispose();
  });

  test('BF16 norm weights are widened to F32 exactly', async () => {
    const bf16 = path.join(SHARED, 'models', 'stories260K-bf16.gguf');
    await writeHfFolderFromGguf(bf16, path.join(dir, 'bf16-norms'), { norms: { dtype: 'BF16' } });
    await writeHfFolderFromGguf(bf16, path.join(dir, 'bf16-norms-widened'), { norms: { dtype: 'BF16', widened: true } });
    const half = await loadModel(path.join(dir, 'bf16-norms'), { device: 'cpu' });
    const widened = await loadModel(path.join(dir, 'bf16-norms-widened'), { device: 'cpu' });
    expect(half.tensors.find((t) => t.name === 'output_norm.weight')).toMatchObject({ type: 'F32', bytes: 64 * 4 });
    expect(half.info.tensorTypes).toEqual({ F32: 11, BF16: 37 });
    const [a, b] = [await greedy(half, prompts[1], 32), await greedy(widened, prompts[1], 32)];
    expect(a.tokens).toEqual(b.tokens);
    expect(relativeError(a.lastLogits, b.lastLogits)).toBe(0);
    half.dispose();
    widened.dispose();
  });
});

describe('config.json options, and bad folders as typed errors', () => {
  /** A copy of the single-file folder, changed by `edit`. */
  function variant(name: string, edit: (folder: string) => void): string {
    const folder = path.join(dir, name);
    fs.cpSync(path.join(dir, 'single'), folder, { recursive: true });
    edit(folder);
    return folder;
  }
  const editConfig = (folder: string, change: Record<string, unknown>): void => {
    const file = path.join(folder, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), ...change }));
  };
  const rewriteWeights = (folder: string, rename: (name: string) => string, dtype?: 'F32'): void => {
    const file = path.join(folder, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: 'F32'; shape: number[]; data_offsets: [number, number] }>;
    const tensors = Object.entries(header)
      .filter(([n]) => n !== '__metadata__' && rename(n) !== '')
      .map(([n, t]) => ({ name: rename(n), dtype: dtype ?? t.dtype, shape: t.shape, data: bytes.subarray(8 + headerLength + t.data_offsets[0], 8 + headerLength + t.data_offsets[1]) }));
    writeSafetensors(file, tensors);
  };

  const cases: [string, string, (folder: string) => void, RegExp][] = [
    ['no config.json', 'E_MODEL_FORMAT', (f) => fs.rmSync(path.join(f, 'config.json')), /config\.json/],
    ['no tokenizer.json', 'E_MODEL_FORMAT', (f) => fs.rmSync(path.join(f, 'tokenizer.json')), /tokenizer\.json/],
    ['no weights', 'E_MODEL_FORMAT', (f) => fs.rmSync(path.join(f, 'model.safetensors')), /safetensors/],
    ['an unknown model_type', 'E_UNSUPPORTED', (f) => editConfig(f, { model_type: 'gpt_neox' }), /gpt_neox/],
    ['a quantized checkpoint', 'E_UNSUPPORTED', (f) => editConfig(f, { quantization_config: { quant_method: 'gptq', bits: 4 } }), /quantiz/],
    ['RoPE scaling other than Llama 3.1\'s', 'E_UNSUPPORTED', (f) => editConfig(f, { rope_scaling: { rope_type: 'yarn', factor: 4 } }), /'yarn'.*rope_scaling/],
    ['an older config\'s scaling "type"', 'E_UNSUPPORTED', (f) => editConfig(f, { rope_scaling: { type: 'linear', factor: 2 } }), /'linear'/],
    ['Llama 3.1 scaling without a factor', 'E_MODEL_FORMAT', (f) => editConfig(f, { rope_scaling: { rope_type: 'llama3' } }), /factor/],
    ['a config that disagrees with the shapes', 'E_MODEL_FORMAT', (f) => editConfig(f, { num_attention_heads: 4, num_key_value_heads: 4 }), /should be|rows/],
    ['a wrong vocab_size', 'E_MODEL_FORMAT', (f) => editConfig(f, { vocab_size: 600 }), /vocab_size/],
    ['a missing lm_head with untied embeddings', 'E_MODEL_FORMAT', (f) => rewriteWeights(f, (n) => (n === 'lm_head.weight' ? '' : n)), /lm_head/],
    ['an unknown tensor', 'E_UNSUPPORTED', (f) => rewriteWeights(f, (n) => n.replace('mlp.up_proj', 'mlp.up_proj_extra')), /up_proj_extra/],
    ['a truncated safetensors file', 'E_MODEL_FORMAT', (f) => fs.truncateSync(path.join(f, 'model.safetensors'), 40000), /truncated/],
    ['a safetensors header that is not JSON', 'E_MODEL_FORMAT', (f) => fs.writeFileSync(path.join(f, 'model.safetensors'), Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a": [1,')])), /invalid JSON/],
    ['a missing shard', 'E_MODEL_FORMAT', (f) => fs.writeFileSync(path.join(f, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { 'lm_head.weight': 'model-00002-of-00002.safetensors' } })), /missing/],
  ];
  test.each(cases)('%s', async (name, code, edit, message) => {
    const folder = variant(name.replace(/\W+/g, '-'), edit);
    await expect(loadModel(folder, { device: 'cpu' })).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  });

  test("mistral is llama, with Mistral's sliding window when it narrows attention; tied embeddings drop lm_head", async () => {
    const mistral = await loadModel(variant('mistral', (f) => editConfig(f, { model_type: 'mistral', sliding_window: null })), { device: 'cpu' });
    expect(mistral.info).toMatchObject({ architecture: 'llama', layers: 5, tiedOutput: false, slidingWindow: 0 });
    mistral.dispose();
    const windowed = await loadModel(variant('mistral-window', (f) => editConfig(f, { model_type: 'mistral', sliding_window: 4 })), { device: 'cpu' });
    expect(windowed.info).toMatchObject({ architecture: 'llama', slidingWindow: 4 });
    windowed.dispose();
    const wide = await loadModel(variant('mistral-wide-window', (f) => editConfig(f, { model_type: 'mistral', sliding_window: 4096 })), { device: 'cpu' });
    expect(wide.info.slidingWindow).toBe(0); // wider than max_position_embeddings: it never narrows attention
    wide.dispose();
    const tied = await loadModel(variant('tied', (f) => editConfig(f, { tie_word_embeddings: true })), { device: 'cpu' });
    expect(tied.info.tiedOutput).toBe(true);
    expect(tied.tensors.map((t) => t.name)).not.toContain('output.weight');
    tied.dispose();
  });

  test('an integer tensor is E_UNSUPPORTED', async () => {
    const folder = variant('int-tensor', (f) => {
      const file = path.join(f, 'model.safetensors');
      writeSafetensors(file, []);
      // The writer only knows float types: patch one in by hand.
      const header = JSON.stringify({ 'model.norm.weight': { dtype: 'I8', shape: [64], data_offsets: [0, 64] } }).padEnd(64, ' ');
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(header.length));
      fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header), Buffer.alloc(64, 1)]));
    });
    await expect(loadModel(folder, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/I8/) });
  });
});

describe("HF's q/k row order", () => {
  // RoPE on one head's vector: GGUF rotates adjacent pairs (x[2i], x[2i+1]); Hugging Face's
  // rotate_half rotates x[i] against x[i + d/2]. Rows in HF order under HF's RoPE must give, row
  // for row, what GGUF-ordered rows give under GGUF's RoPE: that is the layout the writer makes.
  const d = 8;
  const angle = (i: number, pos: number): number => pos * 10000 ** (-(2 * i) / d);
  const ropeInterleaved = (x: number[], pos: number): number[] => {
    const y = x.slice();
    for (let i = 0; i < d / 2; i++) {
      const [c, s] = [Math.cos(angle(i, pos)), Math.sin(angle(i, pos))];
      y[2 * i] = x[2 * i] * c - x[2 * i + 1] * s;
      y[2 * i + 1] = x[2 * i] * s + x[2 * i + 1] * c;
    }
    return y;
  };
  const ropeHalf = (x: number[], pos: number): number[] => {
    const y = x.slice();
    for (let i = 0; i < d / 2; i++) {
      const [c, s] = [Math.cos(angle(i, pos)), Math.sin(angle(i, pos))];
      y[i] = x[i] * c - x[i + d / 2] * s;
      y[i + d / 2] = x[i] * s + x[i + d / 2] * c;
    }
    return y;
  };

  test('unpermuteRopeRows turns the interleaved convention into rotate_half', () => {
    const toHfOrder = (v: number[]): number[] => Array.from(new Float32Array(unpermuteRopeRows(new Uint8Array(new Float32Array(v).buffer), d, 1).buffer));
    const x = [0.3, -1.2, 0.7, 2.1, -0.4, 0.9, 1.5, -0.8]; // one head's q in GGUF row order
    const hf = toHfOrder(x);
    for (const pos of [0, 1, 7]) {
      const expected = toHfOrder(ropeInterleaved(x, pos)); // GGUF's result, written in HF order
      ropeHalf(hf, pos).forEach((v, i) => expect(v).toBeCloseTo(expected[i], 5));
    }
  });
});
