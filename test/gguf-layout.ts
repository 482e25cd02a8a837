// Where the fields of a GGUF header sit, so tests can corrupt exactly one of them.
import fs from 'node:fs';

export interface TensorRecord {
  name: string;
  nameAt: number;
  nDimsAt: number;
  dimsAt: number[];
  typeAt: number;
  offsetAt: number;
}

export interface KvRecord {
  key: string;
  keyAt: number;
  typeAt: number;
  valueAt: number;
}

export interface GgufLayout {
  bytes: Buffer;
  kvs: KvRecord[];
  tensors: TensorRecord[];
  dataStart: number;
}

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

export function readLayout(file: string): GgufLayout {
  const bytes = fs.readFileSync(file);
  let at = 8;
  const u64 = (): number => {
    const v = Number(bytes.readBigUInt64LE(at));
    at += 8;
    return v;
  };
  const u32 = (): number => {
    const v = bytes.readUInt32LE(at);
    at += 4;
    return v;
  };
  const str = (): string => {
    const n = u64();
    const s = bytes.subarray(at, at + n).toString('utf8');
    at += n;
    return s;
  };
  const skipValue = (type: number): void => {
    if (type === 8) str();
    else if (type === 9) {
      const inner = u32();
      const n = u64();
      for (let i = 0; i < n; i++) skipValue(inner);
    } else at += SCALAR_SIZE[type];
  };
  const nTensors = u64();
  const nKv = u64();
  const kvs: KvRecord[] = [];
  for (let i = 0; i < nKv; i++) {
    const keyAt = at;
    const key = str();
    const typeAt = at;
    const type = u32();
    const valueAt = at;
    skipValue(type);
    kvs.push({ key, keyAt, typeAt, valueAt });
  }
  const tensors: TensorRecord[] = [];
  for (let i = 0; i < nTensors; i++) {
    const nameAt = at;
    const name = str();
    const nDimsAt = at;
    const nDims = u32();
    const dimsAt: number[] = [];
    for (let d = 0; d < nDims; d++) {
      dimsAt.push(at);
      u64();
    }
    const typeAt = at;
    u32();
    const offsetAt = at;
    u64();
    tensors.push({ name, nameAt, nDimsAt, dimsAt, typeAt, offsetAt });
  }
  return { bytes, kvs, tensors, dataStart: Math.ceil(at / 32) * 32 };
}
