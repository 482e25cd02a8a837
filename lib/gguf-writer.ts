import fs from 'node:fs';
import { ChaiError } from './errors';
import { toHalf } from './ops';

/** A metadata value with its GGUF type spelled out. */
export type GgufWriteValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'string[]'; value: string[] }
  | { type: 'f32[]'; value: ArrayLike<number> }
  | { type: 'i32[]'; value: ArrayLike<number> };

export interface GgufWriteTensor {
  name: string;
  /** ggml order: dims[0] is the length of a row. */
  dims: number[];
  type: 'F32' | 'F16';
  /** Row-major values; F16 tensors are rounded to nearest even. */
  data: Float32Array;
}

const ALIGNMENT = 32;
const TYPE_CODE = { u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9 } as const;

/** Growable little-endian byte writer. */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;
  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const grown = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(grown, 0, 0, this.length);
    this.buf = grown;
  }
  u32(v: number): void {
    this.room(4);
    this.length = this.buf.writeUInt32LE(v >>> 0, this.length);
  }
  i32(v: number): void {
    this.room(4);
    this.length = this.buf.writeInt32LE(v, this.length);
  }
  u64(v: number): void {
    this.room(8);
    this.length = this.buf.writeBigUInt64LE(BigInt(v), this.length);
  }
  f32(v: number): void {
    this.room(4);
    this.length = this.buf.writeFloatLE(v, this.length);
  }
  u16(v: number): void {
    this.room(2);
    this.length = this.buf.writeUInt16LE(v, this.length);
  }
  u8(v: number): void {
    this.room(1);
    this.length = this.buf.writeUInt8(v, this.length);
  }
  str(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.room(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(alignment: number): void {
    while (this.length % alignment !== 0) this.u8(0);
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

/** Writes a GGUF v3 file (F32 and F16 tensors), for synthetic models in tests and benchmarks. */
export function writeGguf(file: string, metadata: Record<string, GgufWriteValue>, tensors: GgufWriteTensor[]): void {
  const out = new Bytes();
  out.u32(0x46554747); // "GGUF"
  out.u32(3);
  out.u64(tensors.length);
  out.u64(Object.keys(metadata).length);
  for (const [key, v] of Object.entries(metadata)) {
    out.str(key);
    switch (v.type) {
      case 'u32':
        out.u32(TYPE_CODE.u32);
        out.u32(v.value);
        break;
      case 'i32':
        out.u32(TYPE_CODE.i32);
        out.i32(v.value);
        break;
      case 'f32':
        out.u32(TYPE_CODE.f32);
        out.f32(v.value);
        break;
      case 'bool':
        out.u32(TYPE_CODE.bool);
        out.u8(v.value ? 1 : 0);
        break;
      case 'string':
        out.u32(TYPE_CODE.string);
        out.str(v.value);
        break;
      case 'string[]':
        out.u32(TYPE_CODE.array);
        out.u32(TYPE_CODE.string);
        out.u64(v.value.length);
        v.value.forEach((s) => out.str(s));
        break;
      case 'f32[]':
      case 'i32[]':
        out.u32(TYPE_CODE.array);
        out.u32(v.type === 'f32[]' ? TYPE_CODE.f32 : TYPE_CODE.i32);
        out.u64(v.value.length);
        for (let i = 0; i < v.value.length; i++) (v.type === 'f32[]' ? out.f32(v.value[i]) : out.i32(v.value[i]));
        break;
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    const count = t.dims.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) throw new ChaiError('E_INVALID_ARGUMENT', `tensor '${t.name}' has ${t.data.length} values for dims [${t.dims}]`);
    out.str(t.name);
    out.u32(t.dims.length);
    t.dims.forEach((d) => out.u64(d));
    out.u32(t.type === 'F32' ? 0 : 1);
    out.u64(offset);
    offsets.push(offset);
    offset += Math.ceil((count * (t.type === 'F32' ? 4 : 2)) / ALIGNMENT) * ALIGNMENT;
  }
  out.pad(ALIGNMENT);
  for (const t of tensors) {
    if (t.type === 'F32') t.data.forEach((v) => out.f32(v));
    else toHalf(t.data, 'f16').forEach((bits) => out.u16(bits));
    out.pad(ALIGNMENT);
  }
  fs.writeFileSync(file, out.bytes());
}
