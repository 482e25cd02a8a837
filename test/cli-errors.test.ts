// What a new user of the command line hits first: every failure is one `chai-attn: CODE: message`
// line that names the flag to fix, and serve refuses what it cannot run before it listens.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const models = path.join(__dirname, '..', '..', 'shared', 'models');
const stories = path.join(models, 'stories260K.gguf');
const ONE_ERROR_LINE = /^chai-attn: E_[A-Z_]+: [^\n]+\n$/;

function chaiAttn(args: string[], timeout = 60_000): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout, env: { ...process.env, CHAI_CACHE_DIR: cache } });
}

let dir: string;
let cache: string;
let mhaPlan: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-cli-errors-'));
  cache = path.join(dir, 'cache');
  // A plan for stories260K-mha (8 KV heads); stories260K has 4.
  mhaPlan = path.join(dir, 'mha-plan.json');
  fs.writeFileSync(
    mhaPlan,
    JSON.stringify({ version: 1, model: { layers: 5, heads: 8, kvHeads: 8, headDim: 8 }, t0: 5, method: 'kmeans', representative: 'medoid', seed: 0, restarts: 10, layers: [8, 8, 8, 4, 4].map((clusters) => ({ clusters })) }),
  );
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('serve refuses before it listens', () => {
  test('a plan made for another model is E_PLAN_MISMATCH at start, as generate does', () => {
    const r = chaiAttn(['serve', '--model', stories, '--plan', mhaPlan, '--port', '0']);
    expect(r.status).toBe(1);
    expect(r.stdout).not.toMatch(/listening/);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_PLAN_MISMATCH: .*kvHeads 8 vs 4/);
  });

  test('--port out of range names --port', () => {
    const r = chaiAttn(['serve', '--model', stories, '--port', '-1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: --port must be an integer in 0\.\.65535/);
  });

  test('a port in use names --port', async () => {
    const holder = net.createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const port = (holder.address() as net.AddressInfo).port;
      const r = chaiAttn(['serve', '--model', stories, '--port', String(port)]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(ONE_ERROR_LINE);
      expect(r.stderr).toMatch(new RegExp(`^chai-attn: E_INVALID_ARGUMENT: --port ${port} is in use on 127\\.0\\.0\\.1`));
    } finally {
      holder.close();
    }
  });

  test('a --cors-origin that is not an origin names --cors-origin', () => {
    const r = chaiAttn(['serve', '--model', stories, '--port', '0', '--cors-origin', 'localhost:5173/app']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: --cors-origin must be '\*' or an origin/);
  });

  test('a --host that does not resolve names --host', () => {
    const r = chaiAttn(['serve', '--model', stories, '--port', '0', '--host', 'no-such-host.invalid']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: --host 'no-such-host\.invalid' cannot be bound/);
  });
});

describe('every failure is one coded line', () => {
  test.each([
    ['bench --sessions a,b', ['bench', '--model', stories, '--sessions', 'a,b'], /--sessions.*'a,b' is invalid/],
    ['an unknown option', ['generate', '--model', stories, '--prompt', 'x', '--bogus'], /unknown option '--bogus'/],
    ['a missing required option', ['generate', '--prompt', 'x'], /required option '--model <model>' not specified/],
    ['an unknown command', ['genrate'], /unknown command 'genrate'/],
  ])('%s', (_what, args, message) => {
    const r = chaiAttn(args);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: /);
    expect(r.stderr).toMatch(message);
  });

  test('--help still prints help and exits 0', () => {
    const r = chaiAttn(['serve', '--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/--port <n>/);
  });
});

describe('errors name the flag, not the API option', () => {
  test('chat with a model without a chat template names --template', () => {
    const r = spawnSync(process.execPath, [cli, 'chat', '--model', stories], { encoding: 'utf8', input: 'Hi\n', env: { ...process.env, CHAI_CACHE_DIR: cache } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_UNSUPPORTED: .*give one with --template$/m);
  });

  test('a prompt longer than the context names --context', () => {
    const r = chaiAttn(['generate', '--model', stories, '--prompt', 'Once upon a time there was a little girl', '--context', '4']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/^chai-attn: E_CONTEXT_OVERFLOW: .*--context \(4\): use a larger --context or a shorter prompt$/m);
    expect(r.stderr).not.toMatch(/maxTokens/);
  });

  test('two calibration budgets name both flags', () => {
    const r = chaiAttn(['calibrate', '--model', stories, '--max-kl', '0.1', '--min-top1', '0.9']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(ONE_ERROR_LINE);
    expect(r.stderr).toMatch(/give one budget: --max-kl, --min-top1 or --target-savings/);
  });
});
