// Corrupt and truncated copies of the test model, made here, must be rejected with typed errors
// (E_MODEL_FORMAT, or E_UNSUPPORTED for valid files this engine cannot run), never a crash.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChaiError, loadModel } from '../lib';
import { readLayout } from './gguf-layout';

const MODEL = path.join(__dirname, '..', '..', 'shared', 'models', 'stories260K.gguf');

describe('GGUF validation', () => {
  let dir: string;
  let count = 0;
  const layout = readLayout(MODEL);
  const tensor = (name: string) => layout.tensors.find((t) => t.name === name)!;
  const kv = (key: string) => layout.kvs.find((k) => k.key === key)!;

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-gguf-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  function write(bytes: Buffer): string {
    const file = path.join(dir, `bad-${count++}.gguf`);
    fs.writeFileSync(file, bytes);
    return file;
  }

  function mutated(edit: (b: Buffer) => void): string {
    const copy = Buffer.from(layout.bytes);
    edit(copy);
    return write(copy);
  }

  async function expectRejected(file: string, code: string, message?: RegExp): Promise<void> {
    const error = await loadModel(file, { device: 'cpu' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(ChaiError);
    expect((error as ChaiError).code).toBe(code);
    if (message) expect((error as ChaiError).message).toMatch(message);
  }

  test('the intact file loads', async () => {
    const model = await loadModel(MODEL, { device: 'cpu' });
    expect(model.info.layers).toBe(5);
    model.dispose();
  });

  test('a missing file is E_INVALID_ARGUMENT naming the path', async () => {
    await expectRejected(path.join(dir, 'nope.gguf'), 'E_INVALID_ARGUMENT', /nope\.gguf/);
  });

  test.each([0, 3, 23, 24, 40, 1000, 14000])('truncated to %i bytes (inside the header)', async (n) => {
    await expectRejected(write(layout.bytes.subarray(0, n)), 'E_MODEL_FORMAT');
  });

  test('truncated inside the tensor data', async () => {
    await expectRejected(write(layout.bytes.subarray(0, layout.dataStart + 100)), 'E_MODEL_FORMAT', /past the end of the file/);
    await expectRejected(write(layout.bytes.subarray(0, layout.bytes.length - 1)), 'E_MODEL_FORMAT', /truncated or corrupt/);
  });

  test('bad magic and unsupported versions', async () => {
    await expectRejected(mutated((b) => b.write('GGML', 0)), 'E_MODEL_FORMAT', /magic/);
    await expectRejected(mutated((b) => b.writeUInt32LE(1, 4)), 'E_MODEL_FORMAT', /version 1/);
    await expectRejected(mutated((b) => b.writeUInt32LE(4, 4)), 'E_MODEL_FORMAT', /version 4/);
  });

  test('counts and lengths larger than the file', async () => {
    await expectRejected(mutated((b) => b.writeBigUInt64LE(2n ** 40n, 8)), 'E_MODEL_FORMAT', /tensor count/);
    await expectRejected(mutated((b) => b.writeBigUInt64LE(2n ** 40n, 16)), 'E_MODEL_FORMAT', /metadata count/);
    await expectRejected(mutated((b) => b.writeBigUInt64LE(2n ** 62n, layout.kvs[0].keyAt)), 'E_MODEL_FORMAT', /truncated/);
    const tokens = kv('tokenizer.ggml.tokens');
    await expectRejected(mutated((b) => b.writeBigUInt64LE(2n ** 50n, tokens.valueAt + 4)), 'E_MODEL_FORMAT', /elements/);
  });

  test('unknown metadata and tensor types', async () => {
    await expectRejected(mutated((b) => b.writeUInt32LE(99, layout.kvs[3].typeAt)), 'E_MODEL_FORMAT', /unknown value type/);
    const q = tensor('blk.0.attn_q.weight');
    await expectRejected(mutated((b) => b.writeUInt32LE(16, q.typeAt)), 'E_MODEL_FORMAT', /IQ2_XXS.*supported: F32, F16, BF16, Q8_0, Q4_0/);
    // Q4_K blocks hold 256 values; this tensor's rows hold 64.
    await expectRejected(mutated((b) => b.writeUInt32LE(12, q.typeAt)), 'E_MODEL_FORMAT', /attn_q\.weight' is Q4_K with rows of 64.*block of 256/);
    await expectRejected(mutated((b) => b.writeUInt32LE(999, q.typeAt)), 'E_MODEL_FORMAT', /blk\.0\.attn_q\.weight/);
  });

  test('bad tensor offsets, dimension counts and dimensions', async () => {
    const q = tensor('blk.0.attn_q.weight');
    const offset = Number(layout.bytes.readBigUInt64LE(q.offsetAt));
    await expectRejected(mutated((b) => b.writeBigUInt64LE(BigInt(offset + 4), q.offsetAt)), 'E_MODEL_FORMAT', /not aligned/);
    await expectRejected(mutated((b) => b.writeBigUInt64LE(2n ** 40n, q.offsetAt)), 'E_MODEL_FORMAT', /past the end/);
    await expectRejected(mutated((b) => b.writeUInt32LE(5, q.nDimsAt)), 'E_MODEL_FORMAT', /dimensions/);
    await expectRejected(mutated((b) => b.writeBigUInt64LE(0n, q.dimsAt[0])), 'E_MODEL_FORMAT', /invalid dimension/);
  });

  test('shapes that do not fit the architecture name the tensor', async () => {
    const k = tensor('blk.0.attn_k.weight');
    await expectRejected(mutated((b) => b.writeBigUInt64LE(16n, k.dimsAt[1])), 'E_MODEL_FORMAT', /blk\.0\.attn_k\.weight.*\[64, 32\]/);
  });

  test('missing metadata and tensors are named', async () => {
    const blocks = kv('llama.block_count');
    await expectRejected(mutated((b) => b.write('X', blocks.keyAt + 8 + 'llama.block_count'.length - 1)), 'E_MODEL_FORMAT', /llama\.block_count/);
    const norm = tensor('blk.2.ffn_norm.weight');
    await expectRejected(mutated((b) => b.write('X', norm.nameAt + 8)), 'E_MODEL_FORMAT', /blk\.2\.ffn_norm\.weight/);
    const arch = kv('general.architecture');
    await expectRejected(mutated((b) => b.write('gemma', arch.valueAt + 8)), 'E_UNSUPPORTED', /gemma/);
  });

  test('random corruption of the header never crashes and leaves a live session intact', async () => {
    const model = await loadModel(MODEL, { device: 'cpu' });
    const session = model.createSession({ maxTokens: 64 });
    const before = await session.evaluate([1, 403, 407]);
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed / 2 ** 32;
    };
    let rejected = 0;
    for (let trial = 0; trial < 120; trial++) {
      const file = mutated((b) => {
        for (let flips = 0; flips < 3; flips++) b[Math.floor(random() * layout.dataStart)] = Math.floor(random() * 256);
      });
      try {
        const m = await loadModel(file, { device: 'cpu' });
        m.dispose(); // some flips only change token text or scores: a valid file
      } catch (e) {
        expect(e).toBeInstanceOf(ChaiError);
        expect(['E_MODEL_FORMAT', 'E_UNSUPPORTED']).toContain((e as ChaiError).code);
        rejected++;
      }
      fs.rmSync(file);
    }
    expect(rejected).toBeGreaterThan(10);
    await session.reset();
    const after = await session.evaluate([1, 403, 407]);
    expect(Array.from(after)).toEqual(Array.from(before));
    await session.dispose();
    model.dispose();
  });
});
