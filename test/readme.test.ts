// What the README promises a new user: its TypeScript examples, saved as .mjs as it says, parse as
// ES modules (those that need only the test models run against them), and its error table says
// what the loader does.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadModel, writeSyntheticLlama } from '../lib';

const root = path.join(__dirname, '..');
const shared = path.join(root, '..', 'shared');
const examples = [...fs.readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]);

/** The files the examples name, as links to the test models and data. */
const FILES: Record<string, string> = {
  'stories260K.gguf': path.join(shared, 'models', 'stories260K.gguf'),
  'stories260K-mha.gguf': path.join(shared, 'models', 'stories260K-mha.gguf'),
  'an-instruct-model.gguf': path.join(shared, 'models', 'synth-qwen3.gguf'),
  'stories-calib.txt': path.join(shared, 'data', 'stories-calib.txt'),
};

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-readme-'));
  // `import ... from 'chai-attention'` finds this checkout; its own dependencies resolve from there.
  fs.mkdirSync(path.join(dir, 'node_modules'));
  fs.symlinkSync(root, path.join(dir, 'node_modules', 'chai-attention'));
  fs.symlinkSync(path.join(root, 'node_modules', 'openai'), path.join(dir, 'node_modules', 'openai'));
  for (const [name, target] of Object.entries(FILES)) fs.symlinkSync(target, path.join(dir, name));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function save(index: number): string {
  const file = path.join(dir, `example-${index}.mjs`);
  fs.writeFileSync(file, examples[index]);
  return file;
}

test('the README has its five TypeScript examples', () => {
  expect(examples).toHaveLength(5);
});

test.each([0, 1, 2, 3, 4])('example %i parses as an ES module', (index) => {
  const r = spawnSync(process.execPath, ['--check', save(index)], { encoding: 'utf8' });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
});

// The CHAI example calibrates twice at the default size (minutes on a shared CPU) and the OpenAI one
// needs a running server: those two are parsed only.
test.each([
  [0, /bytesSaved/],
  [2, /role: 'user'/],
  [3, /^endOfGeneration \{\n  name: .*\n  age: -?\d+,\n  pets: \[.*\],\n  nickname: /],
])('example %i runs against the test models', (index, output) => {
  const r = spawnSync(process.execPath, [save(index)], { cwd: dir, encoding: 'utf8', timeout: 120_000, env: { ...process.env, CHAI_CACHE_DIR: path.join(dir, 'cache') } });
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toMatch(output);
});

describe('Troubleshooting says which code a model the loader cannot run gets', () => {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const row = (code: string): string => new RegExp(`^\\| \`${code}\` \\|.*$`, 'm').exec(readme)![0];
  const small = { layers: 1, embeddingLength: 32, heads: 4, kvHeads: 4, feedForwardLength: 48, vocabSize: 300, seed: 1 };

  test('E_UNSUPPORTED: another architecture, a tensor the architecture does not use', async () => {
    expect(row('E_UNSUPPORTED')).not.toMatch(/F32\/F16\/BF16\/Q8_0/);
    expect(row('E_UNSUPPORTED')).toMatch(/another architecture/);
    expect(row('E_UNSUPPORTED')).toMatch(/a tensor or metadata key/);
    const gpt2 = path.join(dir, 'gpt2.gguf');
    writeSyntheticLlama(gpt2, { ...small, architecture: 'gpt2' });
    await expect(loadModel(gpt2, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_UNSUPPORTED' });
    const unused = path.join(dir, 'unused.gguf');
    writeSyntheticLlama(unused, { ...small, extraTensors: [{ name: 'blk.0.unused.weight', dims: [32], type: 'F32', data: new Float32Array(32).fill(1) }] });
    await expect(loadModel(unused, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_UNSUPPORTED', message: expect.stringContaining('blk.0.unused.weight') });
  });

  test('E_MODEL_FORMAT: a tensor type the engine does not read (IQ2_XXS here)', async () => {
    expect(row('E_MODEL_FORMAT')).toMatch(/a tensor type this engine does not read/);
    const file = path.join(dir, 'iq2.gguf');
    writeSyntheticLlama(file, { ...small, extraTensors: [{ name: 'extra.weight', dims: [256], type: 'F32', data: new Float32Array(256).fill(1) }] });
    // The tensor's description: name (u64 length, bytes), 1 dimension (u32), 256 (u64), then its type (u32).
    const bytes = fs.readFileSync(file);
    const at = bytes.indexOf('extra.weight') + 'extra.weight'.length + 4 + 8;
    expect(bytes.readUInt32LE(at)).toBe(0); // F32
    bytes.writeUInt32LE(16, at); // ggml IQ2_XXS
    fs.writeFileSync(file, bytes);
    await expect(loadModel(file, { device: 'cpu' })).rejects.toMatchObject({ code: 'E_MODEL_FORMAT', message: expect.stringMatching(/extra\.weight' has type IQ2_XXS/) });
  });
});
