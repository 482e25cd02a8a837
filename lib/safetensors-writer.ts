import fs from 'node:fs';
import { ChaiError } from './errors';

export type SafetensorsDType = 'F32' | 'F16' | 'BF16';

export interface SafetensorsWriteTensor {
  name: string;
  dtype: SafetensorsDType;
  /** Row-major shape: the last dimension is contiguous (PyTorch's order, the reverse of ggml's). */
  shape: number[];
  /** The values' little-endian bytes (F16/BF16: their 16-bit patterns). */
  data: Uint8Array;
}

const ELEMENT_BYTES: Record<SafetensorsDType, number> = { F32: 4, F16: 2, BF16: 2 };

/**
 * Writes a safetensors file (an 8-byte header length, a JSON header, the tensors' bytes), for
 * Hugging Face folders in tests. Wider types go first so that every tensor stays aligned to its
 * element size, as the `safetensors` library lays files out.
 */
export function writeSafetensors(file: string, tensors: SafetensorsWriteTensor[], metadata: Record<string, string> = {}): void {
  const ordered = [...tensors].sort((a, b) => ELEMENT_BYTES[b.dtype] - ELEMENT_BYTES[a.dtype]);
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of ordered) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * ELEMENT_BYTES[t.dtype];
    if (bytes !== t.data.length) {
      throw new ChaiError('E_INVALID_ARGUMENT', `tensor '${t.name}' has ${t.data.length} bytes for ${t.dtype} shape [${t.shape}]`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // the data starts 8-byte aligned
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(json, 'utf8'), ...ordered.map((t) => t.data)]));
}
