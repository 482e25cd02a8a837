// A seeded GGUF fuzz: 1,000 mutated copies of the test model (truncations, bit flips, huge counts,
// lengths and dimensions, wrong type codes, bad strings, bad alignment, random bytes anywhere).
// Each must load or be refused with a typed error; one that loads must encode, evaluate and
// generate, again with typed errors only. native/tests/test_gguf_fuzz.cpp fuzzes the C++ reader
// alone (npm run test:sanitize runs it under ASan and UBSan).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChaiError, loadModel } from '../lib';
import { seededRandom } from '../lib/sampling';
import { readLayout } from './gguf-layout';

const MODEL = path.join(__dirname, '..', '..', 'shared', 'models', 'stories260K.gguf');
const FILES = 1000;
const SEED = 20261130;
const TYPED = ['E_MODEL_FORMAT', 'E_UNSUPPORTED', 'E_NON_FINITE'];

const layout = readLayout(MODEL);
const headerEnd = layout.dataStart;
// Fields to aim at: every u64 (counts, string and array lengths, dimensions, offsets) and u32 type code.
const u64Fields = [8, 16];
const typeFields: number[] = [];
const stringStarts: number[] = [];
for (const kv of layout.kvs) {
  u64Fields.push(kv.keyAt);
  stringStarts.push(kv.keyAt + 8);
  typeFields.push(kv.typeAt);
  const type = layout.bytes.readUInt32LE(kv.typeAt);
  if (type === 8) {
    u64Fields.push(kv.valueAt);
    stringStarts.push(kv.valueAt + 8);
  }
  if (type === 9) {
    typeFields.push(kv.valueAt);
    u64Fields.push(kv.valueAt + 4);
    if (layout.bytes.readUInt32LE(kv.valueAt) === 8) {
      u64Fields.push(kv.valueAt + 12); // the first string's length
      stringStarts.push(kv.valueAt + 20);
    }
  }
}
for (const t of layout.tensors) {
  u64Fields.push(t.nameAt, ...t.dimsAt, t.offsetAt);
  stringStarts.push(t.nameAt + 8);
  typeFields.push(t.nDimsAt, t.typeAt);
}
const blockCount = layout.kvs.find((kv) => kv.key === 'llama.block_count')!; // 17 characters, like general.alignment

function mutate(random: () => number): Buffer {
  const pick = (n: number): number => Math.floor(random() * n);
  const b = Buffer.from(layout.bytes);
  switch (pick(7)) {
    case 0: // truncation, mostly inside the header
      return b.subarray(0, pick(3) === 0 ? pick(b.length) : pick(headerEnd + 64));
    case 1: // bit flips in the header
      for (let n = 1 + pick(8); n > 0; n--) b[pick(headerEnd)] ^= 1 << pick(8);
      return b;
    case 2: {
      // a huge (or zero) count, length, dimension or offset
      const huge = [2n ** 64n - 1n, 2n ** 63n, 2n ** 62n, 2n ** 40n, 2n ** 32n, 0x7fffffffn, 0n, BigInt(pick(2 ** 31))];
      b.writeBigUInt64LE(huge[pick(huge.length)], u64Fields[pick(u64Fields.length)]);
      return b;
    }
    case 3: {
      // a wrong type code
      const codes = [9, 12, 13, 30, 31, 99, 0xffffffff, 2, 8, pick(2 ** 32)];
      b.writeUInt32LE(codes[pick(codes.length)], typeFields[pick(typeFields.length)]);
      return b;
    }
    case 4: {
      // a bad string: invalid UTF-8, a NUL, or a length a little off
      const at = stringStarts[pick(stringStarts.length)];
      if (pick(2)) b[at] = [0xff, 0xc3, 0x00, 0x80, 0xed][pick(5)];
      else b.writeBigUInt64LE(b.readBigUInt64LE(at - 8) + BigInt(1 + pick(16)), at - 8);
      return b;
    }
    case 5: // the alignment: llama.block_count renamed to general.alignment, with an odd value
      b.write('general.alignment', blockCount.keyAt + 8);
      b.writeUInt32LE([0, 1, 2, 3, 4, 8, 16, 24, 64, 2 ** 20][pick(10)], blockCount.valueAt);
      return b;
    default: // random bytes anywhere, tensor data included
      for (let n = 1 + pick(32); n > 0; n--) b[pick(b.length)] = pick(256);
      return b;
  }
}

function expectTyped(error: unknown, where: string): void {
  if (!(error instanceof ChaiError) || !TYPED.includes(error.code)) {
    throw new Error(`${where}: expected a ChaiError (${TYPED.join(', ')}), got ${String(error)}`);
  }
}

test(`${FILES} mutated GGUF files end in typed errors or usable models`, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-fuzz-'));
  const random = seededRandom(SEED);
  let loaded = 0;
  try {
    for (let i = 0; i < FILES; i++) {
      // A new file each time: a file still mapped by a model must never change under it.
      const file = path.join(dir, `mutated-${i}.gguf`);
      fs.writeFileSync(file, mutate(random));
      const where = `file ${i} (seed ${SEED})`;
      let model;
      try {
        model = await loadModel(file, { device: 'cpu' });
      } catch (e) {
        expectTyped(e, where);
        continue;
      }
      loaded++;
      const session = model.createSession({ maxTokens: Math.min(16, model.info.contextLength) });
      try {
        const prompt = model.tokenizer.encode('Once upon a time').slice(0, Math.min(8, session.maxTokens - 2));
        const tokens = prompt.length ? prompt : [0];
        await session.evaluate(tokens);
        await session.reset();
        for await (const step of session.generate(tokens, { temperature: 0, maxNewTokens: 2 })) void step;
      } catch (e) {
        expectTyped(e, `${where}, after loading`);
      } finally {
        await session.dispose();
        model.dispose();
        fs.rmSync(file);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  expect(loaded).toBeGreaterThan(0); // random bytes in the tensor data and harmless flips still load
  expect(loaded).toBeLessThan(FILES / 2); // and most mutations reach a check
}, 120000);
