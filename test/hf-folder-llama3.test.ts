// A Hugging Face folder of a Llama 3.1-style model against the GGUF it converts to: written here
// from ../shared/models/synth-llama3.gguf (Llama 3 tokenizer, tied embeddings, RoPE base 500000
// and Llama 3.1 frequency factors [1, 1, 2.696, 8] in rope_freqs.weight, which llama.cpp's
// converter computed from factor 8, low_freq_factor 1, high_freq_factor 4 and an original context of
// 8192). A folder holds those four parameters in config.json; the loader computes the factors.
// Weights are compared with the same GGUF widened to F32 (a folder cannot hold its Q8_0 embedding).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, Model } from '../lib';
import { relativeError } from './helpers';
import { greedy, writeGgufWithFloatTensors, writeHfFolderFromGguf } from './hf-folder';

const SHARED = path.join(__dirname, '..', '..', 'shared');
const prompts = fs.readFileSync(path.join(SHARED, 'golden', 'prompts.txt'), 'utf8').split('\n').filter((l) => l.length > 0);
const tokenizeCases = (JSON.parse(fs.readFileSync(path.join(SHARED, 'golden', 'tokenize-synth-llama3.json'), 'utf8')) as {
  cases: { text: string; tokens: number[]; tokensSpecial: number[] }[];
}).cases;
const llama31 = { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 };

let dir: string;
let widened: Model;
const folders: Record<string, Model> = {};
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-hf-llama3-'));
  const reference = path.join(dir, 'widened.gguf');
  writeGgufWithFloatTensors(path.join(SHARED, 'models', 'synth-llama3.gguf'), reference, () => 'F32');
  const variants: Record<string, Parameters<typeof writeHfFolderFromGguf>[2]> = {
    scaling: { ropeScaling: llama31 },
    parameters: { ropeScaling: llama31, ropeParameters: true }, // transformers 5's rope_parameters
    factor4: { ropeScaling: { ...llama31, factor: 4 } },
  };
  for (const [name, options] of Object.entries(variants)) await writeHfFolderFromGguf(reference, path.join(dir, name), options);
  widened = await loadModel(reference, { device: 'cpu' });
  for (const name of Object.keys(variants)) folders[name] = await loadModel(path.join(dir, name), { device: 'cpu' });
});
afterAll(() => {
  [widened, ...Object.values(folders)].forEach((m) => m?.dispose());
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a Hugging Face folder of synth-llama3 (Llama 3.1 RoPE scaling)', () => {
  test('has the GGUF\'s hyperparameters and tensors, rope_freqs.weight computed from the scaling', () => {
    const { ggufVersion, name, ...rest } = folders.scaling.info;
    const { ggufVersion: _v, name: _n, ...expected } = widened.info;
    expect(ggufVersion).toBe(0);
    expect(rest).toEqual(expected);
    const byName = (m: Model) => Object.fromEntries(m.tensors.map((t) => [t.name, t.dims]));
    expect(byName(folders.scaling)).toEqual(byName(widened));
    expect(byName(folders.scaling)['rope_freqs.weight']).toEqual([4]);
  });

  test('tokenizes every case as llama.cpp\'s golden file says (which has no BOS), and adds BOS as the GGUF does', () => {
    expect(tokenizeCases.length).toBeGreaterThan(10);
    for (const c of tokenizeCases) {
      expect(folders.scaling.tokenizer.encode(c.text, { addBos: false })).toEqual(c.tokens);
      expect(folders.scaling.tokenizer.encode(c.text, { addBos: false, parseSpecial: true })).toEqual(c.tokensSpecial);
      expect(folders.scaling.tokenizer.encode(c.text)).toEqual(widened.tokenizer.encode(c.text));
    }
    expect(folders.scaling.tokenizer.encode('Hi')[0]).toBe(128000);
  });

  test.each(prompts.slice(0, 3))('greedy 16 tokens and the last logits equal the GGUF\'s, from rope_scaling and from rope_parameters: "%s"', async (prompt) => {
    const want = await greedy(widened, prompt, 16);
    for (const folder of [folders.scaling, folders.parameters]) {
      const got = await greedy(folder, prompt, 16);
      expect(got.tokens).toEqual(want.tokens);
      expect(relativeError(got.lastLogits, want.lastLogits)).toBeLessThan(1e-5);
    }
  });

  test('the scaling parameters matter: factor 4 instead of 8 moves the logits', async () => {
    const want = await greedy(widened, prompts[0], 4);
    const got = await greedy(folders.factor4, prompts[0], 4);
    expect(relativeError(got.lastLogits, want.lastLogits)).toBeGreaterThan(1e-3);
  });
});
