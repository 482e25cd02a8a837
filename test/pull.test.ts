// `pull` and pulled model names against a local HTTP server (no internet here): Range requests,
// a transfer cut mid-body and resumed, Hugging Face-style redirects with x-linked-* headers,
// checksum mismatches and 404s.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { loadModel } from '../lib';
import { modelsCacheDir, parseModelName, resolveModelPath } from '../lib/models/cache';
import { pullModel } from '../lib/models/pull';

const MODEL = path.join(__dirname, '..', '..', 'shared', 'models', 'stories260K.gguf');
const bytes = fs.readFileSync(MODEL);
const sha256 = createHash('sha256').update(bytes).digest('hex');
const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');

/** What the server saw: path and Range header of every request. */
let requests: { url: string; range: string | undefined; authorization?: string }[] = [];
/** Paths whose next answer is cut after this many body bytes (once each). */
const cutOnce = new Map<string, number>();
let server: http.Server;
/** Answers that stalled mid-body, ended when the tests finish. */
const stalled: http.ServerResponse[] = [];
let base: string;
/** The same handler on another port: another host (a CDN), as far as the client can tell. */
let cdn: http.Server;
let otherHost: string;
let cache: string;
let env: NodeJS.ProcessEnv;

function serveFile(req: http.IncomingMessage, res: http.ServerResponse, honourRange = true): void {
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const from = honourRange && range ? Number(range[1]) : 0;
  if (from >= bytes.length) {
    res.writeHead(416, { 'Content-Range': `bytes */${bytes.length}` }).end();
    return;
  }
  const body = bytes.subarray(from);
  const headers: http.OutgoingHttpHeaders = { 'Content-Length': body.length, 'Accept-Ranges': 'bytes' };
  if (from > 0) headers['Content-Range'] = `bytes ${from}-${bytes.length - 1}/${bytes.length}`;
  res.writeHead(from > 0 ? 206 : 200, headers);
  const cut = cutOnce.get(req.url!);
  if (cut !== undefined) {
    cutOnce.delete(req.url!);
    res.write(body.subarray(0, cut), () => res.destroy()); // the connection drops mid-body
    return;
  }
  res.end(body);
}

beforeAll(async () => {
  const handler: http.RequestListener = (req, res) => {
    requests.push({ url: req.url!, range: req.headers.range, authorization: req.headers.authorization });
    const url = req.url!;
    // Hugging Face: /owner/repo/resolve/main/file answers 302 to its CDN with the LFS sha256 and size.
    const hf = /^\/([\w-]+)\/([\w-]+)\/resolve\/main\/(.+)$/.exec(url);
    if (hf) {
      if (hf[3] === 'missing.gguf') return void res.writeHead(404).end('Entry not found');
      if (hf[1] === 'gated') {
        if (req.headers.authorization !== 'Bearer secret') return void res.writeHead(401).end('Access restricted');
        return void res.writeHead(302, { Location: `${otherHost}/cdn/${hf[3]}` }).end();
      }
      const etag = hf[1] === 'liar' ? '0'.repeat(64) : sha256;
      res.writeHead(302, { Location: `/cdn/${hf[3]}`, 'X-Linked-Etag': `"${etag}"`, 'X-Linked-Size': String(bytes.length) }).end();
      return;
    }
    if (url.startsWith('/cdn/') || url.startsWith('/files/')) return serveFile(req, res);
    if (url.startsWith('/no-ranges/')) return serveFile(req, res, false);
    if (url.startsWith('/html/')) return void res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!DOCTYPE html><html><body>Sign in to continue</body></html>');
    if (url.startsWith('/stall/')) {
      // 100 kB of the model, then nothing: the connection stays open until the client gives up.
      res.writeHead(200, { 'Content-Length': bytes.length });
      res.write(bytes.subarray(0, 100_000));
      stalled.push(res);
      return;
    }
    res.writeHead(404).end();
  };
  server = http.createServer(handler);
  cdn = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  otherHost = `http://127.0.0.1:${(cdn.address() as AddressInfo).port}`;
  cache = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-pull-'));
  env = { ...process.env, CHAI_CACHE_DIR: cache, HF_ENDPOINT: base };
});
afterAll(async () => {
  stalled.forEach((res) => res.destroy());
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => cdn.close(resolve));
  fs.rmSync(cache, { recursive: true, force: true });
});
beforeEach(() => {
  requests = [];
});

describe('model names', () => {
  test('hf: names resolve under HF_ENDPOINT and cache under the models folder', () => {
    const m = parseModelName('hf:ggml-org/models/tinyllamas/stories260K.gguf', env)!;
    expect(m.url).toBe(`${base}/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf`);
    expect(m.cachePath).toBe(path.join(cache, 'models', 'hf', 'ggml-org', 'models', 'tinyllamas', 'stories260K.gguf'));
    expect(parseModelName('../shared/models/stories260K.gguf', env)).toBeNull();
    expect(() => parseModelName('hf:owner/repo', env)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
    expect(() => parseModelName('hf:owner/repo/../../etc/passwd', env)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });

  test('the cache folder follows CHAI_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache', () => {
    expect(modelsCacheDir({ CHAI_CACHE_DIR: '/c' })).toBe(path.join('/c', 'models'));
    expect(modelsCacheDir({ XDG_CACHE_HOME: '/x' })).toBe(path.join('/x', 'chai-attention', 'models'));
    expect(modelsCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'chai-attention', 'models'));
  });

  test('a name not pulled yet is E_MODEL_NOT_FOUND telling to pull it; loading never downloads', async () => {
    expect(() => resolveModelPath('hf:someone/never/pulled.gguf', env)).toThrow(expect.objectContaining({ code: 'E_MODEL_NOT_FOUND', message: expect.stringContaining('chai-attn pull hf:someone/never/pulled.gguf') }));
    expect(requests).toHaveLength(0);
  });
});

describe('pullModel', () => {
  test('downloads an hf: name through the redirect, checks x-linked-size/etag, and loadModel then finds it', async () => {
    const name = 'hf:ggml-org/models/tinyllamas/stories260K.gguf';
    const progress: number[] = [];
    const result = await pullModel(name, { env, onProgress: (p) => progress.push(p.receivedBytes) });
    expect(result).toMatchObject({ bytes: bytes.length, sha256, cached: false, resumedFromBytes: 0 });
    expect(fs.readFileSync(result.path).equals(bytes)).toBe(true);
    expect(fs.existsSync(`${result.path}.part`)).toBe(false);
    expect(progress[progress.length - 1]).toBe(bytes.length);
    expect(requests.map((r) => r.url)).toEqual(['/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf', '/cdn/tinyllamas/stories260K.gguf']);

    const again = await pullModel(name, { env, sha256 });
    expect(again).toMatchObject({ cached: true, path: result.path, sha256 });

    const saved = { ...process.env };
    Object.assign(process.env, { CHAI_CACHE_DIR: cache, HF_ENDPOINT: base });
    try {
      const model = await loadModel(name, { device: 'cpu' });
      expect(model.path).toBe(result.path);
      expect(model.info.layers).toBe(5);
      model.dispose();
    } finally {
      process.env = saved;
    }
  });

  test('a transfer cut mid-body keeps its .part, and the next pull resumes it with a Range request', async () => {
    const name = `${base}/files/cut.gguf`;
    cutOnce.set('/files/cut.gguf', 500_000);
    await expect(pullModel(name, { env, retries: 0 })).rejects.toMatchObject({ code: 'E_DOWNLOAD', message: expect.stringMatching(/run pull again to resume/) });
    const part = `${parseModelName(name, env)!.cachePath}.part`;
    const kept = fs.statSync(part).size;
    expect(kept).toBeGreaterThan(0);
    expect(kept).toBeLessThan(bytes.length);

    requests = [];
    const result = await pullModel(name, { env, sha256 });
    expect(requests).toEqual([{ url: '/files/cut.gguf', range: `bytes=${kept}-`, authorization: undefined }]);
    expect(result).toMatchObject({ resumedFromBytes: kept, bytes: bytes.length, sha256 });
    expect(fs.readFileSync(result.path).equals(bytes)).toBe(true);
  });

  test('with retries, a dropped connection resumes within one pull', async () => {
    const name = `${base}/files/flaky.gguf`;
    cutOnce.set('/files/flaky.gguf', 300_000);
    const result = await pullModel(name, { env });
    expect(requests.map((r) => r.range)).toEqual([undefined, expect.stringMatching(/^bytes=\d+-$/)]);
    expect(result.sha256).toBe(sha256);
    expect(fs.readFileSync(result.path).equals(bytes)).toBe(true);
  });

  test('a server that ignores Range gets the whole file again, not a corrupt one', async () => {
    const name = `${base}/no-ranges/model.gguf`;
    const target = parseModelName(name, env)!.cachePath;
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(`${target}.part`, bytes.subarray(0, 1000));
    const result = await pullModel(name, { env, sha256 });
    expect(requests[0].range).toBe('bytes=1000-');
    expect(fs.readFileSync(result.path).equals(bytes)).toBe(true);
  });

  test('a wrong --sha256 deletes the download and is E_INTEGRITY', async () => {
    const name = `${base}/files/wrong-sha.gguf`;
    const target = parseModelName(name, env)!.cachePath;
    await expect(pullModel(name, { env, sha256: 'ab'.repeat(32) })).rejects.toMatchObject({ code: 'E_INTEGRITY', message: expect.stringMatching(new RegExp(`the file's sha256 is ${sha256}, not the ${'ab'.repeat(32)} you gave`)) });
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.existsSync(`${target}.part`)).toBe(false);
  });

  test("a server's x-linked-etag that does not match is E_INTEGRITY", async () => {
    await expect(pullModel('hf:liar/repo/model.gguf', { env })).rejects.toMatchObject({ code: 'E_INTEGRITY', message: expect.stringMatching(/server announced 0000/) });
    expect(fs.existsSync(parseModelName('hf:liar/repo/model.gguf', env)!.cachePath)).toBe(false);
  });

  test('a 404 is E_MODEL_NOT_FOUND and leaves nothing behind', async () => {
    const name = 'hf:ggml-org/models/missing.gguf';
    await expect(pullModel(name, { env })).rejects.toMatchObject({ code: 'E_MODEL_NOT_FOUND', message: expect.stringMatching(/404/) });
    const target = parseModelName(name, env)!.cachePath;
    expect(fs.existsSync(target) || fs.existsSync(`${target}.part`)).toBe(false);
  });

  test('a gated repository needs HF_TOKEN, which goes to the Hugging Face host only', async () => {
    const name = 'hf:gated/repo/model.gguf';
    await expect(pullModel(name, { env })).rejects.toMatchObject({ code: 'E_DOWNLOAD', message: expect.stringMatching(/HTTP 401.*HF_TOKEN/) });
    requests = [];
    const result = await pullModel(name, { env: { ...env, HF_TOKEN: 'secret' } });
    expect(result.sha256).toBe(sha256);
    expect(requests.map((r) => [r.url, r.authorization])).toEqual([
      ['/gated/repo/resolve/main/model.gguf', 'Bearer secret'],
      ['/cdn/model.gguf', undefined],
    ]);
  });

  test('a pull of a name another live process is pulling is refused; a dead one\'s lock is taken over', async () => {
    const name = `${base}/files/locked.gguf`;
    const lock = `${parseModelName(name, env)!.cachePath}.lock`;
    fs.mkdirSync(path.dirname(lock), { recursive: true });
    fs.writeFileSync(lock, String(process.pid));
    await expect(pullModel(name, { env })).rejects.toMatchObject({ code: 'E_DOWNLOAD', message: expect.stringMatching(/another pull .* is running/) });
    expect(requests).toHaveLength(0);

    const child = await promisify(execFile)(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    fs.writeFileSync(lock, child.stdout); // that process has exited
    const result = await pullModel(name, { env, sha256 });
    expect(result.bytes).toBe(bytes.length);
    expect(fs.existsSync(lock)).toBe(false);
  });

  test('a web page under a .gguf name is E_MODEL_FORMAT, not a download; nothing is kept', async () => {
    const name = `${base}/html/model.gguf`;
    await expect(pullModel(name, { env })).rejects.toMatchObject({ code: 'E_MODEL_FORMAT', message: expect.stringMatching(/not a GGUF model \(no GGUF magic; they begin "<!DOCTYPE html>/) });
    const target = parseModelName(name, env)!.cachePath;
    expect(fs.existsSync(target) || fs.existsSync(`${target}.part`)).toBe(false);
  });

  test('a server that stalls is given up on after timeoutSeconds with E_DOWNLOAD; the bytes so far are kept', async () => {
    const name = `${base}/stall/model.gguf`;
    const started = Date.now();
    await expect(pullModel(name, { env, timeoutSeconds: 1 })).rejects.toMatchObject({ code: 'E_DOWNLOAD', message: expect.stringMatching(/sent nothing for 1 s .*the 100000 bytes so far are kept/) });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(fs.statSync(`${parseModelName(name, env)!.cachePath}.part`).size).toBe(100_000);
  });

  test('a cached file reports its sha256, recorded at download or hashed when no record exists', async () => {
    const name = `${base}/files/cached.gguf`;
    const first = await pullModel(name, { env });
    expect(first.sha256).toBe(sha256);
    requests = [];
    expect(await pullModel(name, { env })).toMatchObject({ cached: true, sha256 });
    fs.rmSync(`${first.path}.pulled.json`);
    expect(await pullModel(name, { env })).toMatchObject({ cached: true, sha256 });
    expect(requests).toHaveLength(0);
  });

  test('a wrong sha256 for a good cached file says what the file has, and keeps it', async () => {
    const name = `${base}/files/cached-check.gguf`;
    const { path: file } = await pullModel(name, { env });
    const wrong = 'cd'.repeat(32);
    const error = await pullModel(name, { env, sha256: wrong }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'E_INTEGRITY', message: expect.stringContaining(`the file's sha256 is ${sha256}, not the ${wrong} you gave`) });
    expect((error as Error).message).not.toMatch(/delete/);
    expect(fs.existsSync(file)).toBe(true);
  });

  test('a malformed --sha256 is E_INVALID_ARGUMENT', async () => {
    await expect(pullModel(`${base}/files/x.gguf`, { env, sha256: 'xyz' })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});

describe('chai-attn pull', () => {
  const run = promisify(execFile);
  test('--json reports the cached file, and --model takes the name afterwards', async () => {
    const name = 'hf:cli/repo/stories260K.gguf';
    const pulled = await run(process.execPath, [cli, 'pull', name, '--json'], { env });
    const result = JSON.parse(pulled.stdout) as { path: string; bytes: number; sha256: string };
    expect(result).toMatchObject({ bytes: bytes.length, sha256 });
    const info = await run(process.execPath, [cli, 'info', '--model', name, '--json'], { env });
    expect(JSON.parse(info.stdout)).toMatchObject({ path: result.path, info: { layers: 5 } });
  });

  test('a second pull --json reports the cached file with its sha256', async () => {
    const name = 'hf:cli/repo/stories260K.gguf';
    const again = await run(process.execPath, [cli, 'pull', name, '--json'], { env });
    expect(JSON.parse(again.stdout)).toMatchObject({ cached: true, sha256 });
  });

  test('a web page is an error, not "downloaded"; a stall names --timeout', async () => {
    await expect(run(process.execPath, [cli, 'pull', `${base}/html/page.gguf`], { env })).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/^chai-attn: E_MODEL_FORMAT: .*not a GGUF model/) });
    await expect(run(process.execPath, [cli, 'pull', `${base}/stall/cli.gguf`, '--timeout', '1'], { env })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^chai-attn: E_DOWNLOAD: .*sent nothing for 1 s \(--timeout\)/),
    });
  });

  test('an error exits 1 with its code', async () => {
    await expect(run(process.execPath, [cli, 'generate', '--model', 'hf:cli/repo/absent.gguf', '--prompt', 'x'], { env })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('E_MODEL_NOT_FOUND'),
    });
  });
});

describe('chai-attn list and rm', () => {
  const run = promisify(execFile);
  let own: NodeJS.ProcessEnv;
  beforeAll(() => {
    own = { ...env, CHAI_CACHE_DIR: path.join(cache, 'list') };
  });

  test('list names every pulled model with its size, sha256 and path; rm deletes one with its record', async () => {
    const empty = await run(process.execPath, [cli, 'list'], { env: own });
    expect(empty.stdout).toMatch(/^no models in .*chai-attn pull NAME/);
    const hf = await pullModel('hf:ggml-org/models/list/a.gguf', { env: own });
    const url = await pullModel(`${base}/files/list-b.gguf`, { env: own });
    fs.rmSync(`${url.path}.pulled.json`); // as an older pull left it: hashed now, named by its place
    const listed = JSON.parse((await run(process.execPath, [cli, 'list', '--json'], { env: own })).stdout);
    expect(listed).toEqual([
      { name: 'hf:ggml-org/models/list/a.gguf', path: hf.path, bytes: bytes.length, sha256 },
      { name: path.join('urls', `127.0.0.1_${new URL(base).port}`, 'files', 'list-b.gguf'), path: url.path, bytes: bytes.length, sha256 },
    ]);
    const text = (await run(process.execPath, [cli, 'list'], { env: own })).stdout;
    expect(text).toContain(`hf:ggml-org/models/list/a.gguf\n  1.1 MiB, sha256 ${sha256}\n  ${hf.path}\n`);

    const removed = await run(process.execPath, [cli, 'rm', 'hf:ggml-org/models/list/a.gguf'], { env: own });
    expect(removed.stdout).toBe(`removed ${hf.path}\n`);
    expect(fs.existsSync(hf.path) || fs.existsSync(`${hf.path}.pulled.json`)).toBe(false);
    expect(fs.existsSync(path.dirname(hf.path))).toBe(false); // no empty folders left
    await run(process.execPath, [cli, 'rm', listed[1].name], { env: own }); // a name as list shows it
    expect(JSON.parse((await run(process.execPath, [cli, 'list', '--json'], { env: own })).stdout)).toEqual([]);
    await expect(run(process.execPath, [cli, 'rm', 'hf:ggml-org/models/list/a.gguf'], { env: own })).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/^chai-attn: E_MODEL_NOT_FOUND: .*chai-attn list/),
    });
  });
});
