// Model names (`hf:owner/repo/file.gguf`, http(s) URLs) and the local cache they download into.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ChaiError } from '../errors';
import { planCacheDir } from '../plan-cache';

/** A model name that `chai-attn pull` can download, and where it lives once downloaded. */
export interface RemoteModel {
  /** The name as the user wrote it. */
  name: string;
  url: string;
  /** The cached file (it exists only after a successful pull). */
  cachePath: string;
}

/**
 * The models cache: $CHAI_CACHE_DIR/models, else $XDG_CACHE_HOME/chai-attention/models, else
 * ~/.cache/chai-attention/models (the models/ folder of the cache that also holds the plans).
 */
export function modelsCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(planCacheDir(env), 'models');
}

/** Where `hf:` names resolve (HF_ENDPOINT overrides it, as Hugging Face's own tools allow). */
export function huggingFaceEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  return (env.HF_ENDPOINT || 'https://huggingface.co').replace(/\/+$/, '');
}

/** Path segments safe to use under the cache folder (no '', '.', '..'). */
function safeSegments(parts: string[], name: string): string[] {
  const decoded = parts.map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (decoded.length === 0 || decoded.some((p) => p === '' || p === '.' || p === '..' || /[\\/\0]/.test(p))) {
    throw new ChaiError('E_INVALID_ARGUMENT', `'${name}' does not name a file (expected hf:owner/repo/path/file.gguf or an http(s) URL of a file)`);
  }
  return decoded;
}

/** Parses `hf:owner/repo/path` or an http(s) URL; null for anything else (a local path). */
export function parseModelName(name: string, env: NodeJS.ProcessEnv = process.env): RemoteModel | null {
  const cache = modelsCacheDir(env);
  if (name.startsWith('hf:')) {
    const parts = name.slice(3).split('/');
    if (parts.length < 3) {
      throw new ChaiError('E_INVALID_ARGUMENT', `'${name}' should be hf:owner/repo/path/to/file (e.g. hf:ggml-org/models/tinyllamas/stories260K.gguf)`);
    }
    const segments = safeSegments(parts, name);
    const [owner, repo, ...file] = segments;
    const url = `${huggingFaceEndpoint(env)}/${owner}/${repo}/resolve/main/${file.map(encodeURIComponent).join('/')}`;
    return { name, url, cachePath: path.join(cache, 'hf', owner, repo, ...file) };
  }
  if (/^https?:\/\//i.test(name)) {
    let url: URL;
    try {
      url = new URL(name);
    } catch {
      throw new ChaiError('E_INVALID_ARGUMENT', `'${name}' is not a valid URL`);
    }
    const segments = safeSegments(url.pathname.split('/').filter((p, i) => i > 0 || p !== ''), name);
    // The port keeps two local servers apart; ':' is not welcome in every file system.
    const host = url.port ? `${url.hostname}_${url.port}` : url.hostname;
    return { name, url: url.toString(), cachePath: path.join(cache, 'urls', host, ...segments) };
  }
  return null;
}

/**
 * What `--model` / loadModel opens: a local path as it is, a pulled name as its cached file. A
 * name not pulled yet is E_MODEL_NOT_FOUND (loading never downloads behind the user's back).
 */
export function resolveModelPath(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const remote = parseModelName(name, env);
  if (!remote) return name;
  if (!fs.existsSync(remote.cachePath)) {
    throw new ChaiError('E_MODEL_NOT_FOUND', `'${name}' is not in the models cache (${modelsCacheDir(env)}); download it first: chai-attn pull ${name}`);
  }
  return remote.cachePath;
}

/** What a pull records beside the file it downloaded: where it came from and its checked sha256. */
export interface PulledRecord {
  name: string;
  url: string;
  bytes: number;
  sha256: string;
}

/** The record of a pulled file, `<file>.pulled.json`; a sidecar so that the model file stays as served. */
export function pulledRecordPath(cachePath: string): string {
  return `${cachePath}.pulled.json`;
}

/** The record written when `cachePath` was pulled, or null (pulled before records were kept, or unreadable). */
export function readPulledRecord(cachePath: string): PulledRecord | null {
  try {
    const record = JSON.parse(fs.readFileSync(pulledRecordPath(cachePath), 'utf8')) as PulledRecord;
    return typeof record.sha256 === 'string' && typeof record.bytes === 'number' ? record : null;
  } catch {
    return null;
  }
}

export function writePulledRecord(cachePath: string, record: PulledRecord): void {
  fs.writeFileSync(pulledRecordPath(cachePath), `${JSON.stringify(record, null, 2)}\n`);
}

export interface PulledModel {
  /** The name it was pulled as (for a file pulled before names were recorded: hf:… from its place, else its path in the cache). */
  name: string;
  path: string;
  bytes: number;
  sha256: string;
}

/** What a pull leaves beside a model file (its record, an unfinished .part, the lock of a running pull). */
const BESIDE_MODELS = /\.(pulled\.json|part|lock)$/;

/** The models in the cache, sorted by name. A file without a record (an older pull) is hashed now. */
export async function listPulledModels(env: NodeJS.ProcessEnv = process.env): Promise<PulledModel[]> {
  const root = modelsCacheDir(env);
  if (!fs.existsSync(root)) return [];
  const files = (fs.readdirSync(root, { recursive: true }) as string[]).filter((f) => !BESIDE_MODELS.test(f) && fs.statSync(path.join(root, f)).isFile());
  const models = await Promise.all(
    files.map(async (relative): Promise<PulledModel> => {
      const file = path.join(root, relative);
      const bytes = fs.statSync(file).size;
      const record = readPulledRecord(file);
      const parts = relative.split(path.sep);
      const name = record?.name ?? (parts[0] === 'hf' ? `hf:${parts.slice(1).join('/')}` : relative);
      return { name, path: file, bytes, sha256: record?.bytes === bytes ? record.sha256 : await sha256Of(file) };
    }),
  );
  return models.sort((a, b) => a.name.localeCompare(b.name));
}

/** sha256 (hex) of a whole file. */
export async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Deletes a pulled model (as named when pulled, or as `listPulledModels` names it) with its record
 * and any unfinished download, and the folders that leaves empty. Returns the path removed.
 */
export async function removePulledModel(name: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const file = parseModelName(name, env)?.cachePath ?? (await listPulledModels(env)).find((m) => m.name === name)?.path;
  if (file === undefined || !fs.existsSync(file)) {
    throw new ChaiError('E_MODEL_NOT_FOUND', `'${name}' is not in the models cache (${modelsCacheDir(env)}); \`chai-attn list\` shows what is`);
  }
  for (const f of [file, pulledRecordPath(file), `${file}.part`]) fs.rmSync(f, { force: true });
  const root = modelsCacheDir(env);
  for (let dir = path.dirname(file); dir.startsWith(root + path.sep) && fs.readdirSync(dir).length === 0; dir = path.dirname(dir)) fs.rmdirSync(dir);
  return file;
}
