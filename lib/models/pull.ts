// Downloads a model into the models cache: resumable (HTTP Range into a .part file) and checked
// (size and sha256, from the caller or from Hugging Face's x-linked-size / x-linked-etag headers,
// and the GGUF header) before the file takes its final name.
import { createHash, Hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ChaiError, invalidOption } from '../errors';
import { parseModelName, PulledRecord, readPulledRecord, RemoteModel, sha256Of, writePulledRecord } from './cache';

export interface PullProgress {
  /** Bytes of the file present so far (a resumed download starts above 0). */
  receivedBytes: number;
  /** The file's size when the server says it, else null. */
  totalBytes: number | null;
}

export interface PullOptions {
  /** Expected sha256 (hex) of the whole file; it wins over the server's claim. */
  sha256?: string;
  /** Times to resume after a dropped connection before giving up (default 3). */
  retries?: number;
  /** Seconds without a byte from the server before the download gives up (default 30). */
  timeoutSeconds?: number;
  onProgress?: (progress: PullProgress) => void;
  signal?: AbortSignal;
  env?: NodeJS.ProcessEnv;
}

export interface PullResult {
  name: string;
  url: string;
  path: string;
  bytes: number;
  /** sha256 of the file (of a cached file: as recorded when it was pulled, else computed now). */
  sha256: string;
  /** The file was in the cache already; nothing was downloaded. */
  cached: boolean;
  /** Bytes reused from an earlier, interrupted download. */
  resumedFromBytes: number;
}

const MAX_REDIRECTS = 10;
const SHA256 = /^[0-9a-f]{64}$/;

/** What the server claims about the file (from any hop of the redirect chain). */
interface Claims {
  size: number | null;
  sha256: string | null;
}

function downloadError(message: string, cause?: unknown): ChaiError {
  return new ChaiError('E_DOWNLOAD', message, cause === undefined ? undefined : { cause });
}

/** The body stopped before its end: worth resuming. */
class ConnectionDropped extends ChaiError {
  constructor(
    readonly url: string,
    readonly receivedBytes: number,
    cause: unknown,
  ) {
    super('E_DOWNLOAD', `the connection dropped after ${receivedBytes} bytes of ${url}`, { cause });
  }
}

function readClaims(headers: Headers, claims: Claims): void {
  const size = headers.get('x-linked-size');
  if (size && /^\d+$/.test(size)) claims.size = Number(size);
  // Hugging Face sends the sha256 of LFS files as the (quoted) linked ETag.
  const etag = headers.get('x-linked-etag')?.replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  if (etag && SHA256.test(etag)) claims.sha256 = etag;
}

/**
 * GET with redirects followed by hand, so the first hop's x-linked-* headers are seen. `token`
 * (HF_TOKEN, for gated repositories) goes to the first host only, never to where it redirects.
 */
async function request(url: string, from: number, claims: Claims, token: string | undefined, signal?: AbortSignal): Promise<Response> {
  let current = url;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = {};
    if (from > 0) headers.Range = `bytes=${from}-`;
    if (token && new URL(current).host === new URL(url).host) headers.Authorization = `Bearer ${token}`;
    let response: Response;
    try {
      response = await fetch(current, { redirect: 'manual', signal, headers });
    } catch (error) {
      if (signal?.aborted) throw downloadError('the download was cancelled', error);
      throw downloadError(`cannot reach ${new URL(current).host}: ${(error as Error).message}`, error);
    }
    readClaims(response.headers, claims);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      current = new URL(location, current).toString();
      continue;
    }
    return response;
  }
  throw downloadError(`${url} redirects more than ${MAX_REDIRECTS} times`);
}

/** Hashes what an earlier attempt left in the .part file, so the digest covers the whole file. */
async function hashExisting(file: string, hash: Hash): Promise<void> {
  for await (const chunk of fs.createReadStream(file)) hash.update(chunk as Buffer);
}

/** Aborts `signal` when `seconds` pass without a call to touch(): a server that stops sending is given up on. */
function stallWatch(seconds: number, outer: AbortSignal | undefined): { signal: AbortSignal; touch(): void; stalled(): boolean; stop(): void } {
  const stall = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const touch = (): void => {
    clearTimeout(timer);
    timer = setTimeout(() => stall.abort(), seconds * 1000);
  };
  touch();
  return { signal: outer ? AbortSignal.any([outer, stall.signal]) : stall.signal, touch, stalled: () => stall.signal.aborted, stop: () => clearTimeout(timer) };
}

/**
 * The downloaded file must be a GGUF model: its magic, a version this engine reads (2 or 3) and
 * tensor and metadata counts that fit the file. A web page saved under a .gguf name fails here.
 */
async function checkGgufHeader(file: string, url: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const { size } = await handle.stat();
    const header = Buffer.alloc(24);
    const { bytesRead } = await handle.read(header, 0, 24, 0);
    const start = JSON.stringify(header.subarray(0, Math.min(bytesRead, 16)).toString('latin1'));
    const notGguf = (why: string): ChaiError =>
      new ChaiError('E_MODEL_FORMAT', `${url} sent ${size} bytes that are not a GGUF model (${why}; they begin ${start}): check the name, it may be a web page; the download was deleted`);
    if (bytesRead < 24 || header.toString('latin1', 0, 4) !== 'GGUF') throw notGguf('no GGUF magic');
    const version = header.readUInt32LE(4);
    if (version !== 2 && version !== 3) throw notGguf(`GGUF version ${version}; versions 2 and 3 are read`);
    // Every tensor description and metadata entry takes more than 8 bytes of the file.
    const entries = header.readBigUInt64LE(8) + header.readBigUInt64LE(16);
    if (entries * 8n > BigInt(size)) throw notGguf(`a header that counts ${entries} tensors and metadata entries in a file of ${size} bytes`);
  } finally {
    await handle.close();
  }
}

/** One attempt: appends to `part` from its current length. Returns when the body has ended. */
async function attempt(remote: RemoteModel, part: string, claims: Claims, options: PullOptions, timeoutSeconds: number): Promise<{ hash: Hash; bytes: number }> {
  const watch = stallWatch(timeoutSeconds, options.signal);
  let received = fs.existsSync(part) ? fs.statSync(part).size : 0;
  try {
    return await transfer(remote, part, claims, { ...options, signal: watch.signal }, watch.touch, (bytes) => (received = bytes));
  } catch (error) {
    if (!watch.stalled()) throw error;
    throw new ChaiError(
      'E_DOWNLOAD',
      `${remote.url} sent nothing for ${timeoutSeconds} s (timeoutSeconds): the server stalled; the ${received} bytes so far are kept in ${part}: run pull again to resume`,
      { cause: error, option: 'timeoutSeconds' },
    );
  } finally {
    watch.stop();
  }
}

/** The HTTP exchange of one attempt; `touch` on every chunk keeps the stall watch quiet, `onBytes` tells how far it got. */
async function transfer(
  remote: RemoteModel,
  part: string,
  claims: Claims,
  options: PullOptions,
  touch: () => void,
  onBytes: (bytes: number) => void,
): Promise<{ hash: Hash; bytes: number }> {
  let from = fs.existsSync(part) ? fs.statSync(part).size : 0;
  const token = remote.name.startsWith('hf:') ? (options.env ?? process.env).HF_TOKEN : undefined;
  let response = await request(remote.url, from, claims, token, options.signal);
  if (response.status === 416 && from > 0) {
    // The range starts at or past the end: the .part is complete already, or stale. Start over.
    await response.body?.cancel();
    fs.rmSync(part, { force: true });
    from = 0;
    response = await request(remote.url, 0, claims, token, options.signal);
  }
  if (response.status === 404) {
    await response.body?.cancel();
    throw new ChaiError('E_MODEL_NOT_FOUND', `${remote.url} does not exist (HTTP 404); check the name '${remote.name}'`);
  }
  if (response.status === 401 || response.status === 403) {
    await response.body?.cancel();
    throw downloadError(
      `${remote.url} answered HTTP ${response.status}: the repository may be gated or private; accept its terms on the website and set HF_TOKEN to an access token`,
    );
  }
  if (response.status !== 200 && response.status !== 206) {
    await response.body?.cancel();
    throw downloadError(`${remote.url} answered HTTP ${response.status} ${response.statusText}`);
  }
  if (response.status === 206) {
    const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.headers.get('content-range') ?? '');
    if (!range || Number(range[1]) !== from) {
      await response.body?.cancel();
      throw downloadError(`${remote.url} answered a range request with an unexpected Content-Range`);
    }
    if (range[3] !== '*' && claims.size === null) claims.size = Number(range[3]);
  } else {
    // A full answer (the server ignores ranges, or nothing was there to resume): start afresh.
    from = 0;
    const length = response.headers.get('content-length');
    if (length && claims.size === null) claims.size = Number(length);
  }

  const hash = createHash('sha256');
  if (from > 0) await hashExisting(part, hash);
  const out = await fs.promises.open(part, from > 0 ? 'a' : 'w');
  let received = from;
  options.onProgress?.({ receivedBytes: received, totalBytes: claims.size });
  try {
    if (!response.body) throw downloadError(`${remote.url} sent no body`);
    // Errors of the body are the network's (worth resuming); errors of the file are the disk's.
    const chunks = response.body[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await chunks.next();
      } catch (error) {
        if (options.signal?.aborted) throw downloadError('the download was cancelled; run pull again to resume', error);
        throw new ConnectionDropped(remote.url, received, error);
      }
      if (next.done) break;
      try {
        await out.write(next.value);
      } catch (error) {
        throw downloadError(`cannot write ${part}: ${(error as Error).message}`, error);
      }
      hash.update(next.value);
      received += next.value.length;
      touch();
      onBytes(received);
      options.onProgress?.({ receivedBytes: received, totalBytes: claims.size });
    }
  } finally {
    await out.close();
  }
  return { hash, bytes: received };
}

/**
 * Downloads `name` (hf:owner/repo/path or an http(s) URL) into the models cache and returns the
 * cached file. An interrupted download resumes from its .part file (here, up to `retries` times,
 * or on the next call). A size or sha256 mismatch deletes the download and rejects with
 * E_INTEGRITY; an HTTP 404 rejects with E_MODEL_NOT_FOUND, other failures with E_DOWNLOAD.
 */
export async function pullModel(name: string, options: PullOptions = {}): Promise<PullResult> {
  const remote = parseModelName(name, options.env);
  if (!remote) throw new ChaiError('E_INVALID_ARGUMENT', `'${name}' is not a model name to pull (hf:owner/repo/path/file.gguf or an http(s) URL)`);
  const expected = options.sha256?.toLowerCase();
  if (expected !== undefined && !SHA256.test(expected)) throw invalidOption('sha256', `must be 64 hexadecimal digits, got '${options.sha256}'`);
  const retries = options.retries ?? 3;
  if (!Number.isInteger(retries) || retries < 0) throw invalidOption('retries', `must be an integer >= 0, got ${options.retries}`);
  const timeoutSeconds = options.timeoutSeconds ?? 30;
  if (!(timeoutSeconds > 0 && Number.isFinite(timeoutSeconds))) throw invalidOption('timeoutSeconds', `must be a number of seconds > 0, got ${options.timeoutSeconds}`);

  if (fs.existsSync(remote.cachePath)) return cached(remote, expected);

  fs.mkdirSync(path.dirname(remote.cachePath), { recursive: true });
  const release = lockDownload(remote);
  try {
    return await download(remote, expected, retries, timeoutSeconds, options);
  } finally {
    release();
  }
}

/**
 * Two pulls appending to one .part would corrupt it: the first takes a lock file holding its pid;
 * a second is refused while that process lives, and takes the lock over from a dead one.
 */
function lockDownload(remote: RemoteModel): () => void {
  const lock = `${remote.cachePath}.lock`;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      return () => fs.rmSync(lock, { force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw downloadError(`cannot create ${lock}: ${(error as Error).message}`, error);
    }
    const owner = Number(fs.readFileSync(lock, 'utf8'));
    let alive = Number.isInteger(owner) && owner > 0;
    try {
      if (alive) process.kill(owner, 0);
    } catch (error) {
      alive = (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
    }
    if (alive) throw downloadError(`another pull of '${remote.name}' is running (process ${owner}); wait for it, or delete ${lock} if it is not`);
    // A dead owner's lock: remove it unless someone took it over meanwhile, then race for it again.
    if (fs.readFileSync(lock, { encoding: 'utf8', flag: 'r' }) === String(owner)) fs.rmSync(lock, { force: true });
  }
}

/**
 * A file pulled before: its sha256 as recorded then (hashed now for a file pulled before records
 * were kept). With `expected`, the file itself is hashed and must match.
 */
async function cached(remote: RemoteModel, expected: string | undefined): Promise<PullResult> {
  const bytes = fs.statSync(remote.cachePath).size;
  const record = readPulledRecord(remote.cachePath);
  let sha256 = record?.bytes === bytes ? record.sha256 : undefined;
  if (sha256 === undefined || expected !== undefined) {
    sha256 = await sha256Of(remote.cachePath);
    writePulledRecord(remote.cachePath, { name: remote.name, url: remote.url, bytes, sha256 });
  }
  if (expected !== undefined && sha256 !== expected) {
    throw new ChaiError('E_INTEGRITY', `${remote.cachePath}: the file's sha256 is ${sha256}, not the ${expected} you gave: check the value`, { option: 'sha256' });
  }
  return { name: remote.name, url: remote.url, path: remote.cachePath, bytes, sha256, cached: true, resumedFromBytes: 0 };
}

async function download(remote: RemoteModel, expected: string | undefined, retries: number, timeoutSeconds: number, options: PullOptions): Promise<PullResult> {
  const part = `${remote.cachePath}.part`;
  const resumedFromBytes = fs.existsSync(part) ? fs.statSync(part).size : 0;
  const claims: Claims = { size: null, sha256: null };
  let result: { hash: Hash; bytes: number } | undefined;
  for (let tries = 0; !result; tries++) {
    try {
      result = await attempt(remote, part, claims, options, timeoutSeconds);
    } catch (error) {
      if (!(error instanceof ConnectionDropped)) throw error;
      if (tries >= retries) {
        throw downloadError(`${error.message}, ${retries} resumes did not finish it; the ${error.receivedBytes} bytes are kept in ${part}: run pull again to resume`, error);
      }
    }
  }

  const sha256 = result.hash.digest('hex');
  const problems: string[] = [];
  if (claims.size !== null && result.bytes !== claims.size) problems.push(`${result.bytes} bytes where the server announced ${claims.size}`);
  if (expected !== undefined && sha256 !== expected) problems.push(`the file's sha256 is ${sha256}, not the ${expected} you gave`);
  if (claims.sha256 !== null && sha256 !== claims.sha256) problems.push(`sha256 ${sha256} where the server announced ${claims.sha256}`);
  if (problems.length > 0) {
    fs.rmSync(part, { force: true });
    throw new ChaiError('E_INTEGRITY', `the download of ${remote.url} is corrupt (${problems.join('; ')}); it was deleted, pull again`);
  }
  try {
    await checkGgufHeader(part, remote.url);
  } catch (error) {
    fs.rmSync(part, { force: true });
    throw error;
  }
  const record: PulledRecord = { name: remote.name, url: remote.url, bytes: result.bytes, sha256 };
  writePulledRecord(remote.cachePath, record);
  fs.renameSync(part, remote.cachePath);
  return { ...record, path: remote.cachePath, cached: false, resumedFromBytes };
}
