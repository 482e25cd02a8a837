// Hugging Face folders of Qwen2 and Qwen3 against the GGUF they convert to. The folders are
// written here from ../shared/models/synth-qwen{2,3}.gguf: HF tensor names (q/k/v biases, q/k
// norms), q/k rows as they are (Qwen runs NeoX RoPE, HF's rotate_half layout), config.json,
// and a tokenizer.json + tokenizer_config.json built from the GGUF's vocabulary, merges and chat
// template. A folder cannot hold the Q8_0 embedding of those files, so the weights are compared
// against the same GGUF with its tensors widened exactly to F32 (or rounded to BF16).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, Model } from '../lib';
import { relativeError } from './helpers';
import { greedy, writeGgufWithFloatTensors, writeHfFolderFromGguf } from './hf-folder';

const SHARED = path.join(__dirname, '..', '..', 'shared');
const prompts = fs.readFileSync(path.join(SHARED, 'golden', 'prompts.txt'), 'utf8').split('\n').filter((l) => l.length > 0);
// qwen2 and qwen3 share one tokenizer, so one golden file serves both (see ../shared/golden/README.md).
const tokenizeCases = (JSON.parse(fs.readFileSync(path.join(SHARED, 'golden', 'tokenize-synth-qwen2.json'), 'utf8')) as {
  cases: { text: string; tokens: number[]; tokensSpecial: number[] }[];
}).cases;

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-hf-qwen-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** The folder of `gguf` with its tensors as `typeOf` says, and the GGUF with the same tensors. */
async function folderAndGguf(gguf: string, name: string, typeOf: Parameters<typeof writeGgufWithFloatTensors>[2]): Promise<[string, string]> {
  const reference = path.join(dir, `${name}.gguf`);
  writeGgufWithFloatTensors(gguf, reference, typeOf);
  await writeHfFolderFromGguf(reference, path.join(dir, name));
  return [path.join(dir, name), reference];
}

// The F32 folder of each architecture, written once for all tests.
const f32Folders = new Map<string, Promise<[string, string]>>();
function f32Folder(arch: string): Promise<[string, string]> {
  if (!f32Folders.has(arch)) f32Folders.set(arch, folderAndGguf(path.join(SHARED, 'models', `synth-${arch}.gguf`), `${arch}-f32`, () => 'F32'));
  return f32Folders.get(arch)!;
}

describe.each(['qwen2', 'qwen3'])('a Hugging Face folder of synth-%s', (arch) => {
  const original = path.join(SHARED, 'models', `synth-${arch}.gguf`);
  let gguf: Model; // the file as shipped (Q8_0 embedding)
  let widened: Model; // its tensors widened to F32
  let folder: Model;
  beforeAll(async () => {
    const [folderPath, widenedPath] = await f32Folder(arch);
    [gguf, widened, folder] = await Promise.all([original, widenedPath, folderPath].map((p) => loadModel(p, { device: 'cpu' })));
  });
  afterAll(() => [gguf, widened, folder].forEach((m) => m.dispose()));

  test('has the architecture, hyperparameters and tensors of the GGUF', () => {
    const { ggufVersion, name, ...rest } = folder.info;
    const { ggufVersion: _v, name: _n, ...expected } = widened.info;
    expect(ggufVersion).toBe(0);
    expect(name).toBe(`${arch}-f32`);
    expect(rest).toEqual(expected);
    expect(rest).toMatchObject({ architecture: arch, ropeStyle: 'neox', slidingWindow: 0, tiedOutput: arch === 'qwen3' });
    expect(rest.headDim).toBe(gguf.info.headDim);
    const byName = (m: Model) => Object.fromEntries(m.tensors.map((t) => [t.name, t.dims]));
    expect(byName(folder)).toEqual(byName(gguf));
    expect(folder.tensors.map((t) => t.name)).toEqual(expect.arrayContaining(arch === 'qwen2' ? ['blk.1.attn_q.bias', 'blk.1.attn_v.bias'] : ['blk.1.attn_q_norm.weight', 'blk.1.attn_k_norm.weight']));
  });

  test("tokenizes every case as the GGUF does (and as llama.cpp's golden file says), special tokens too", () => {
    expect(folder.tokenizer.kind).toBe('gpt2');
    for (const key of ['bos', 'eos', 'addBos', 'endOfGeneration', 'vocabSize'] as const) expect(folder.tokenizer[key]).toEqual(gguf.tokenizer[key]);
    expect(tokenizeCases.length).toBeGreaterThan(10);
    for (const c of tokenizeCases) {
      expect(folder.tokenizer.encode(c.text)).toEqual(gguf.tokenizer.encode(c.text));
      expect(folder.tokenizer.encode(c.text)).toEqual(c.tokens);
      expect(folder.tokenizer.encode(c.text, { parseSpecial: true })).toEqual(c.tokensSpecial);
      expect(folder.tokenizer.decode(c.tokensSpecial)).toBe(gguf.tokenizer.decode(c.tokensSpecial));
    }
    expect(folder.metadata['tokenizer.chat_template']).toBe(gguf.metadata['tokenizer.chat_template']);
  });

  test.each(prompts.slice(0, 3))('greedy 16 tokens and the last logits equal the GGUF\'s: "%s"', async (prompt) => {
    const ours = await greedy(folder, prompt, 16);
    const reference = await greedy(widened, prompt, 16);
    expect(ours.tokens).toEqual(reference.tokens);
    expect(relativeError(ours.lastLogits, reference.lastLogits)).toBeLessThan(1e-5);
  });

  test("is the model llama.cpp ran: its greedy tokens, and its last prompt logits within 2% (llama.cpp rounds to F16 and 8 bits)", async () => {
    const golden = JSON.parse(fs.readFileSync(path.join(SHARED, 'golden', `synth-${arch}.json`), 'utf8')) as {
      logitsPrefix: number;
      cases: { prompt: string; promptTokens: number[]; greedy: number[]; lastLogits: number[] }[];
    };
    const cases = golden.cases.filter((g) => prompts.slice(0, 3).includes(g.prompt));
    expect(cases).toHaveLength(3);
    for (const c of cases) {
      expect(folder.tokenizer.encode(c.prompt)).toEqual(c.promptTokens);
      const session = folder.createSession({ maxTokens: 64 });
      const logits = await session.evaluate(c.promptTokens);
      await session.dispose();
      expect(relativeError(logits.subarray(0, golden.logitsPrefix), c.lastLogits)).toBeLessThan(0.02);
      expect((await greedy(folder, c.prompt, c.greedy.length)).tokens).toEqual(c.greedy);
    }
  });
});

// One architecture suffices: the dtypes pass through the same code for both.
test('a BF16 folder of synth-qwen2 computes what the BF16 GGUF computes (vectors stay F32, as converters keep them)', async () => {
  const [folderPath, ggufPath] = await folderAndGguf(path.join(SHARED, 'models', 'synth-qwen2.gguf'), 'qwen2-bf16', (_name, dims) => (dims.length === 2 ? 'BF16' : 'F32'));
  const [half, reference] = await Promise.all([loadModel(folderPath, { device: 'cpu' }), loadModel(ggufPath, { device: 'cpu' })]);
  expect(half.info.tensorTypes).toEqual(reference.info.tensorTypes);
  expect(half.info.tensorTypes.BF16).toBeGreaterThan(0);
  const [ours, theirs] = [await greedy(half, prompts[0], 16), await greedy(reference, prompts[0], 16)];
  expect(ours.tokens).toEqual(theirs.tokens);
  expect(relativeError(ours.lastLogits, theirs.lastLogits)).toBeLessThan(1e-5);
  half.dispose();
  reference.dispose();
});

describe('Qwen config.json options the engine does not run are E_UNSUPPORTED', () => {
  let qwen2: string;
  let qwen3: string;
  beforeAll(async () => {
    [[qwen2], [qwen3]] = await Promise.all([f32Folder('qwen2'), f32Folder('qwen3')]);
  });
  /** `from` with its config.json changed by `change` (its other files linked, not copied). */
  function variant(from: string, name: string, change: Record<string, unknown>): string {
    const folder = path.join(dir, name);
    fs.mkdirSync(folder);
    for (const file of fs.readdirSync(from)) if (file !== 'config.json') fs.symlinkSync(path.join(from, file), path.join(folder, file));
    const config = JSON.parse(fs.readFileSync(path.join(from, 'config.json'), 'utf8')) as Record<string, unknown>;
    fs.writeFileSync(path.join(folder, 'config.json'), JSON.stringify({ ...config, ...change }));
    return folder;
  }

  test.each([
    ['a sliding window in every layer', 'qwen2', { use_sliding_window: true, sliding_window: 8, max_window_layers: 0 }, /sliding-window attention .* qwen2/],
    ['a sliding window in some layers', 'qwen3', { use_sliding_window: true, sliding_window: 8, max_window_layers: 1 }, /layers 1 and up/],
    ['per-layer attention types', 'qwen2', { layer_types: ['full_attention', 'sliding_attention'] }, /layer_types/],
    ['Qwen3 attention biases', 'qwen3', { attention_bias: true }, /attention biases/],
    ['RoPE scaling (YaRN)', 'qwen3', { rope_scaling: { rope_type: 'yarn', factor: 4, original_max_position_embeddings: 32768 } }, /rope_scaling/],
  ])('%s', async (name, arch, change, message) => {
    const folder = variant(arch === 'qwen2' ? qwen2 : qwen3, name.replace(/\W+/g, '-'), change);
    await expect(loadModel(folder, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(message) });
  });

  test('a window that no layer uses, or that is switched off, loads', async () => {
    for (const [name, change] of [
      ['window-off', { use_sliding_window: false, sliding_window: 8, max_window_layers: 0 }],
      ['window-past-the-layers', { use_sliding_window: true, sliding_window: 8, max_window_layers: 2 }],
    ] as const) {
      const model = await loadModel(variant(qwen2, name, change), { device: 'cpu' });
      expect(model.info.slidingWindow).toBe(0);
      model.dispose();
    }
  });

  test("one Qwen's tensors read as the other's are refused (each description lists its own)", async () => {
    const qwen3AsQwen2 = variant(qwen3, 'qwen3-as-qwen2', { model_type: 'qwen2' });
    await expect(loadModel(qwen3AsQwen2, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/_norm.*qwen2/) });
    const qwen2AsQwen3 = variant(qwen2, 'qwen2-as-qwen3', { model_type: 'qwen3' });
    await expect(loadModel(qwen2AsQwen3, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringMatching(/_proj\.bias.*qwen3/) });
  });
});
