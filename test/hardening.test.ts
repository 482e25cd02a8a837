// Reproducers of defects a probe found (issue 10): each bad input must end in a ChaiError with a
// stable code, quickly, with the model and other sessions intact.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { calibrate, ChaiError, ClusterPlan, evaluateChai, loadModel, matmul, measureThroughput, Model, saveCachedPlan, toHalf, writeSyntheticLlama } from '../lib';
import { readLayout } from './gguf-layout';

const root = path.join(__dirname, '..');
const shared = path.join(root, '..', 'shared');
const STORIES = path.join(shared, 'models', 'stories260K.gguf');
const cli = path.join(root, 'dist', 'cli', 'main.js');

/** The error a promise rejects with (or a function throws), or null. */
async function failure(work: () => unknown): Promise<unknown> {
  try {
    await work();
    return null;
  } catch (e) {
    return e;
  }
}

async function expectCode(work: () => unknown, code: string, message?: RegExp): Promise<void> {
  const e = await failure(work);
  expect(e).toBeInstanceOf(ChaiError);
  expect((e as ChaiError).code).toBe(code);
  if (message) expect((e as ChaiError).message).toMatch(message);
}

let dir: string;
let stories: Model;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-harden-'));
  stories = await loadModel(STORIES, { device: 'cpu' });
  // 'auto' (the default plan of eval) is the plan cached for the model file: give the commands
  // below a cache of their own holding one, so that none calibrates.
  process.env.CHAI_CACHE_DIR = path.join(dir, 'cache');
  saveCachedPlan(STORIES, ClusterPlan.create(stories.info, [8, 8, 8, 8, 4]));
});
afterAll(() => {
  delete process.env.CHAI_CACHE_DIR;
  stories.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

const SMALL = { layers: 1, embeddingLength: 32, heads: 4, kvHeads: 4, feedForwardLength: 64, vocabSize: 300 };

describe('1. non-finite logits', () => {
  test('NaN in the output weights is E_NON_FINITE at any temperature, and the session stays usable', async () => {
    const file = path.join(dir, 'nan.gguf');
    writeSyntheticLlama(file, SMALL);
    const layout = readLayout(file);
    const output = layout.tensors.find((t) => t.name === 'output.weight')!;
    const at = layout.dataStart + Number(layout.bytes.readBigUInt64LE(output.offsetAt)) + 7 * SMALL.embeddingLength * 4;
    for (let i = 0; i < SMALL.embeddingLength; i++) layout.bytes.writeFloatLE(NaN, at + 4 * i);
    fs.writeFileSync(file, layout.bytes);
    const model = await loadModel(file, { device: 'cpu' });
    const session = model.createSession({ maxTokens: 32 });
    for (const temperature of [0, 0.8]) {
      await session.reset();
      await expectCode(() => session.generate([1, 20], { temperature, seed: 1 }).next(), 'E_NON_FINITE', /token 7/);
    }
    expect((await session.evaluate([5])).length).toBe(SMALL.vocabSize); // not busy, not disposed
    await session.dispose();
    model.dispose();
  });
});

describe('2. token ids are checked, not coerced', () => {
  test.each([[[1, 2 ** 32 + 5]], [['abc']], [[1.5]], [[-1]], [[512]], [[NaN]], [[1, null]]])('evaluate(%j) is E_INVALID_ARGUMENT', async (tokens) => {
    const session = stories.createSession({ maxTokens: 16 });
    await expectCode(() => session.evaluate(tokens as number[]), 'E_INVALID_ARGUMENT', /token id.*\[0, 512\)/);
    await expectCode(() => session.generate(tokens as number[]).next(), 'E_INVALID_ARGUMENT', /token id/);
    expect(session.tokens.length).toBe(0);
    expect((await session.evaluate([1, 511])).length).toBe(512);
    await session.dispose();
  });
});

describe('3. arguments are checked at the API boundary', () => {
  test.each<[string, (s: ReturnType<Model['createSession']>) => unknown]>([
    ['evaluate(null)', (s) => s.evaluate(null as unknown as number[])],
    ['evaluate(tokens, null)', (s) => s.evaluate([1], null as unknown as object)],
    ['generate(null)', (s) => s.generate(null as unknown as string).next()],
    ['generate(prompt, null)', (s) => s.generate('a', null as unknown as object).next()],
    ['generate(prompt, { temperature: "hot" })', (s) => s.generate('a', { temperature: 'hot' as unknown as number }).next()],
    ['reset("x")', (s) => s.reset('x' as unknown as number)],
    ['tokenizer.encode(null)', () => stories.tokenizer.encode(null as unknown as string)],
    ['tokenizer.encode(text, 5)', () => stories.tokenizer.encode('a', 5 as unknown as object)],
    ['tokenizer.decode(null)', () => stories.tokenizer.decode(null as unknown as number[])],
    ['ClusterPlan.create(info, null)', () => ClusterPlan.create(stories.info, null as unknown as number[])],
    ['ClusterPlan.create(null, clusters)', () => ClusterPlan.create(null as unknown as Model['info'], [8])],
    ['createSession(null)', () => stories.createSession(null as unknown as object)],
    ['loadModel(null)', () => loadModel(null as unknown as string)],
    ['loadModel(path, null)', () => loadModel(STORIES, null as unknown as object)],
    ['calibrate(model, null)', () => calibrate(stories, null as unknown as string)],
    ['evaluateChai(model, null, options)', () => evaluateChai(stories, null as unknown as string, { plan: 'auto' })],
    ['evaluateChai(model, text, null)', () => evaluateChai(stories, 'text', null as unknown as { plan: 'auto' })],
    ['measureThroughput(model, null)', () => measureThroughput(stories, null as unknown as number[])],
    ['matmul(null, 1, null)', () => matmul(null as unknown as Float32Array, 1, null as unknown as never)],
    ['toHalf(null)', () => toHalf(null as unknown as Float32Array, 'f16')],
  ])('%s is E_INVALID_ARGUMENT', async (_, call) => {
    const session = stories.createSession({ maxTokens: 16 });
    await expectCode(() => call(session), 'E_INVALID_ARGUMENT');
    await session.dispose();
  });
});

describe('4. maxTokens is bounded and costs nothing up front', () => {
  test('maxTokens 2**30 is rejected at once, naming the model context', async () => {
    await expectCode(() => stories.createSession({ maxTokens: 2 ** 30 }), 'E_INVALID_ARGUMENT', /maxTokens must be an integer in 1\.\.2048/);
  });

  test('a session as long as the context holds no pages until used and matches a short one', async () => {
    const long = stories.createSession({ maxTokens: stories.info.contextLength });
    const short = stories.createSession({ maxTokens: 40 });
    expect(long.cache.stats().vBytes).toBe(0);
    const tokens = Array.from({ length: 36 }, (_, i) => 1 + ((i * 37) % 511));
    for (const t of tokens) expect(Array.from(await long.evaluate([t]))).toEqual(Array.from(await short.evaluate([t])));
    expect(long.cache.stats()).toEqual(short.cache.stats());
    await long.dispose();
    await short.dispose();
  });
});

describe('5. a session with an open generate() is busy', () => {
  test('reset, evaluate and a second generate are E_SESSION_BUSY and the generation is undisturbed', async () => {
    const options = { temperature: 0, maxNewTokens: 12 };
    const alone = stories.createSession({ maxTokens: 64 });
    const expected: number[] = [];
    for await (const { token } of alone.generate('Once upon a time', options)) expected.push(token);

    const session = stories.createSession({ maxTokens: 64 });
    const stream = session.generate('Once upon a time', options);
    const got = [((await stream.next()).value as { token: number }).token];
    await expectCode(() => session.reset(), 'E_SESSION_BUSY', /generate\(\)/);
    await expectCode(() => session.evaluate([1]), 'E_SESSION_BUSY');
    await expectCode(() => session.generate('Lily').next(), 'E_SESSION_BUSY');
    for (;;) {
      const step = await stream.next();
      if (step.done) break;
      got.push(step.value.token);
    }
    expect(got).toEqual(expected);
    await session.reset(); // free again once the generation finished

    const broken = session.generate('Once upon a time', options);
    await broken.next();
    await broken.return(undefined as never); // what `break` in for-await does
    await session.reset();
    expect(session.tokens.length).toBe(0);
    await Promise.all([alone.dispose(), session.dispose()]);
  });
});

describe('6. GGUF alignment and sizes', () => {
  test('general.alignment = 1 is E_MODEL_FORMAT', async () => {
    const file = path.join(dir, 'align1.gguf');
    writeSyntheticLlama(file, { ...SMALL, metadata: { 'general.alignment': { type: 'u32', value: 1 } } });
    await expectCode(() => loadModel(file), 'E_MODEL_FORMAT', /general\.alignment must be a power of two from 8/);
  });

  test('a tensor whose byte count wraps 64 bits is E_MODEL_FORMAT', async () => {
    const layout = readLayout(STORIES);
    const q = layout.tensors.find((t) => t.name === 'blk.0.attn_q.weight')!;
    const bytes = Buffer.from(layout.bytes);
    bytes.writeBigUInt64LE(2n ** 40n, q.dimsAt[0]); // 2^40 × 2^22 f32 values: 2^64 bytes, 0 once wrapped
    bytes.writeBigUInt64LE(2n ** 22n, q.dimsAt[1]);
    const file = path.join(dir, 'wrap.gguf');
    fs.writeFileSync(file, bytes);
    await expectCode(() => loadModel(file), 'E_MODEL_FORMAT', /too large/);
  });
});

describe('7. the vocabulary matches the embedding rows', () => {
  const tokens = Array.from({ length: SMALL.vocabSize + 10 }, (_, i) => (i < 3 ? ['<unk>', '<s>', '</s>'][i] : `t${i}`));
  test.each([
    ['tokenizer.ggml.tokens', { 'tokenizer.ggml.tokens': { type: 'string[]' as const, value: tokens } }],
    ['tokenizer.ggml.scores', { 'tokenizer.ggml.scores': { type: 'f32[]' as const, value: new Float32Array(SMALL.vocabSize - 1) } }],
    ['llama.vocab_size', { 'llama.vocab_size': { type: 'u32' as const, value: SMALL.vocabSize + 1 } }],
  ])('%s of another size is E_MODEL_FORMAT', async (key, metadata) => {
    const file = path.join(dir, `vocab-${key}.gguf`);
    writeSyntheticLlama(file, { ...SMALL, metadata });
    await expectCode(() => loadModel(file), 'E_MODEL_FORMAT', new RegExp(`${key.replace(/\./g, '\\.')}.*token_embd`));
  });
});

describe('8. seeds', () => {
  test.each([2 ** 32 + 1, 2 ** 32, -1, 1.5, 2 ** 53])('seed %p is E_INVALID_ARGUMENT', async (seed) => {
    const session = stories.createSession({ maxTokens: 16 });
    await expectCode(() => session.generate('Once', { seed }).next(), 'E_INVALID_ARGUMENT', /seed must be an integer in \[0, 2\*\*32\)/);
    await session.dispose();
  });

  test('the largest seed works', async () => {
    const session = stories.createSession({ maxTokens: 16 });
    const first = await session.generate('Once', { seed: 2 ** 32 - 1, maxNewTokens: 1 }).next();
    expect(first.done).toBe(false);
    await session.dispose();
  });
});

describe('9. the command line', () => {
  const run = (args: string[], cwd = root) => spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', env: process.env });
  const mha = path.join(shared, 'models', 'stories260K-mha.gguf');
  const data = path.join(shared, 'data', 'stories-calib.txt');

  test('--version prints the package version', () => {
    const r = run(['--version']);
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')).version);
  });

  test('--plan auto is never read as a file: it is the plan cached for the model file', () => {
    const cwd = fs.mkdtempSync(path.join(dir, 'cwd-'));
    fs.writeFileSync(path.join(cwd, 'auto'), 'not a plan');
    const model = path.join(cwd, 'model.gguf');
    fs.copyFileSync(mha, model);
    saveCachedPlan(model, ClusterPlan.create({ layers: 5, heads: 8, kvHeads: 8, headDim: 8 }, [8, 8, 8, 4, 4]));
    const evaluated = run(['eval', '--model', model, '--data', data, '--plan', 'auto', '--windows', '1', '--window-tokens', '16', '--json'], cwd);
    expect(evaluated.stderr).toBe('');
    expect(evaluated.status).toBe(0);
    const report = JSON.parse(evaluated.stdout);
    expect(report.windows).toBe(1);
    expect(report.plan.layers.map((l: { clusters: number }) => l.clusters)).toEqual([8, 8, 8, 4, 4]);
    const bench = run(['bench', '--model', model, '--plan', 'auto', '--sessions', '1', '--json'], cwd);
    expect(bench.stderr).toBe('');
    expect(bench.status).toBe(0);
    expect(JSON.parse(bench.stdout).rows.map((r: { attention: string }) => r.attention)).toEqual(['full attention', 'CHAI plan']);
  });

  test.each([
    [['eval', '--model', STORIES, '--data', data, '--windows', '0'], /E_INVALID_ARGUMENT: --windows must be an integer >= 1, got 0/],
    [['eval', '--model', STORIES, '--data', data, '--window-tokens', '1'], /E_INVALID_ARGUMENT: --window-tokens must be/],
    [['generate', '--model', STORIES, '--prompt', 'a', '--top-p', '2'], /E_INVALID_ARGUMENT: --top-p must be in \(0, 1\]/],
    [['generate', '--model', STORIES, '--prompt', 'a', '--context', '99999'], /E_INVALID_ARGUMENT: --context must be an integer in 1\.\.2048/],
    [['generate', '--model', STORIES, '--prompt', 'a', '--seed', '4294967297'], /E_INVALID_ARGUMENT: --seed must be an integer in \[0, 2\*\*32\)/],
    [['generate', '--model', STORIES, '--prompt', 'a', '--device', 'tpu'], /E_INVALID_ARGUMENT: unknown --device 'tpu'/],
    [['eval', '--model', STORIES, '--data', data, '--window-tokens', '100000'], /lower --window-tokens/],
    [['calibrate', '--model', STORIES, '--data', data, '--out', '/dev/null', '--t0', '99'], /E_INVALID_ARGUMENT: --t0 must be/],
  ])('errors name the flag typed: %j', (args, message) => {
    const r = run(args);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/TypeError/);
  });

  test('values lowered to what the input allows are reported on stderr', () => {
    const full = run(['generate', '--model', STORIES, '--prompt', 'Once upon a time', '--context', '12', '--max-tokens', '50', '--temperature', '0']);
    expect(full.status).toBe(0);
    expect(full.stderr).toMatch(/stopped after \d+ of --max-tokens 50 new tokens: the session is full at 12 tokens \(--context\)/);
    const few = run(['eval', '--model', STORIES, '--data', data, '--windows', '100000', '--window-tokens', '16', '--json']);
    expect(few.status).toBe(0);
    expect(few.stderr).toMatch(/--windows 100000: the text has only \d+ paragraphs/);
  });

  test('Ctrl-C stops generate cleanly: a finished line and exit status 130', async () => {
    const model = path.join(dir, 'slow.gguf');
    writeSyntheticLlama(model, { layers: 4, embeddingLength: 256, heads: 8, kvHeads: 8, feedForwardLength: 512, vocabSize: 2000 });
    const child = spawn(process.execPath, [cli, 'generate', '--model', model, '--prompt', 'a', '--max-tokens', '4000', '--context', '4096', '--seed', '1']);
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const status = await new Promise<number | null>((resolve) => {
      child.stdout.on('data', (d: Buffer) => {
        if (!stdout) child.kill('SIGINT');
        stdout += d.toString();
      });
      child.on('close', (code) => resolve(code));
    });
    expect(stderr).toMatch(/stopped \(Ctrl-C\)/);
    expect(status).toBe(130);
    expect(stdout.endsWith('\n')).toBe(true);
  });
});

describe('10. packaging', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { license: string; scripts: Record<string, string> };

  test('an MIT LICENSE file', () => {
    const license = fs.readFileSync(path.join(root, 'LICENSE'), 'utf8');
    expect(pkg.license).toBe('MIT');
    expect(license).toMatch(/^MIT License/);
    expect(license).toMatch(/Copyright \(c\) 2026 chai-attention contributors/);
  });

  test('no script runs as a pre/post hook of another (prebuild used to run before build)', () => {
    const hooks = Object.keys(pkg.scripts).flatMap((name) => [`pre${name}`, `post${name}`]).filter((hook) => hook in pkg.scripts);
    expect(hooks).toEqual([]);
    expect(pkg.scripts.prebuildify).toMatch(/^prebuildify /);
  });

  test('prepare skips tsc where TypeScript is not installed', () => {
    const bare = fs.mkdtempSync(path.join(dir, 'bare-'));
    fs.copyFileSync(path.join(root, 'tsconfig.json'), path.join(bare, 'tsconfig.json'));
    const r = spawnSync(process.execPath, [path.join(root, 'scripts', 'prepare.js')], { cwd: bare, encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/TypeScript is not installed/);
    expect(pkg.scripts.prepare).toBe('node scripts/prepare.js');
  });

  test('the README says its TypeScript examples are ES modules', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    expect(readme).toMatch(/ES modules?/);
  });
});
