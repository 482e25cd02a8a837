// The plan that chai: 'auto' means: the cluster plan cached for a model file, keyed by the file's
// content hash, in the user's cache folder (never beside the model, whose folder may be read-only).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ChaiError } from './errors';
import { ClusterPlan } from './plan';

/**
 * Where cached plans live: $CHAI_CACHE_DIR, else $XDG_CACHE_HOME/chai-attention, else
 * ~/.cache/chai-attention. The package's cache root: pulled models go to its models/ folder.
 */
export function planCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CHAI_CACHE_DIR) return path.resolve(env.CHAI_CACHE_DIR);
  if (env.XDG_CACHE_HOME) return path.join(path.resolve(env.XDG_CACHE_HOME), 'chai-attention');
  return path.join(os.homedir(), '.cache', 'chai-attention');
}

// Files up to this size are hashed whole; larger ones by sampled chunks (see modelFileHash).
const WHOLE_FILE_LIMIT = 256 * 2 ** 20;
const SAMPLE_CHUNKS = 64;
const SAMPLE_BYTES = 2 ** 20;
const hashes = new Map<string, { size: number; mtimeMs: number; hash: string }>();

/**
 * sha256 (hex) of a model file's content. Files over 256 MiB are hashed by their size and 64
 * chunks of 1 MiB spread evenly from the first byte to the last, so that opening a session on a
 * large model does not read it all. Remembered per path while size and mtime stay the same.
 */
export function modelFileHash(file: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (e) {
    throw new ChaiError('E_INVALID_ARGUMENT', `cannot read the model file '${file}': ${(e as Error).message}`);
  }
  if (stat.isDirectory()) {
    // A Hugging Face folder: its config and its weights decide what the model computes.
    const hash = crypto.createHash('sha256').update('hf-folder\n');
    for (const name of fs.readdirSync(file).filter((n) => n === 'config.json' || n.endsWith('.safetensors')).sort()) {
      hash.update(`${name} ${modelFileHash(path.join(file, name))}\n`);
    }
    return hash.digest('hex');
  }
  const known = hashes.get(file);
  if (known && known.size === stat.size && known.mtimeMs === stat.mtimeMs) return known.hash;
  const hash = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.alloc(Math.min(SAMPLE_BYTES, stat.size));
    if (stat.size <= WHOLE_FILE_LIMIT) {
      for (let at = 0; at < stat.size; at += chunk.length) hash.update(chunk.subarray(0, fs.readSync(fd, chunk, 0, chunk.length, at)));
    } else {
      hash.update(`sampled ${stat.size}\n`);
      for (let i = 0; i < SAMPLE_CHUNKS; i++) {
        const at = Math.floor(((stat.size - chunk.length) * i) / (SAMPLE_CHUNKS - 1));
        hash.update(chunk.subarray(0, fs.readSync(fd, chunk, 0, chunk.length, at)));
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  const hex = hash.digest('hex');
  hashes.set(file, { size: stat.size, mtimeMs: stat.mtimeMs, hash: hex });
  return hex;
}

/** The cache file of a model file's plan. */
export function cachedPlanPath(modelFile: string): string {
  return path.join(planCacheDir(), `${modelFileHash(modelFile)}.chai.json`);
}

/** The cached plan of a model file, or null when none was calibrated for it. */
export function loadCachedPlan(modelFile: string): ClusterPlan | null {
  const file = cachedPlanPath(modelFile);
  return fs.existsSync(file) ? ClusterPlan.load(file) : null;
}

/** Stores `plan` as the model file's plan (what chai: 'auto' then uses). Returns the cache file. */
export function saveCachedPlan(modelFile: string, plan: ClusterPlan): string {
  const file = cachedPlanPath(modelFile);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // Written whole, then renamed: a reader never sees half a plan.
  const partial = `${file}.${process.pid}.tmp`;
  plan.save(partial);
  fs.renameSync(partial, file);
  return file;
}
