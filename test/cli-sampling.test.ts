// generate and chat take the sampling users expect (penalties, min-p, stop strings) and --threads,
// and do with them what the API does.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { GenerateOptions, loadModel } from '../lib';

const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const models = path.join(__dirname, '..', '..', 'shared', 'models');
const stories = path.join(models, 'stories260K.gguf');

function chaiAttn(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 60_000 });
}

/** What the API generates from the stories model with these options (greedy unless told). */
async function viaApi(prompt: string, options: GenerateOptions): Promise<string> {
  const model = await loadModel(stories, { device: 'cpu' });
  const session = model.createSession();
  const stream = session.generate(prompt, { temperature: 0, ...options });
  let step = await stream.next();
  while (!step.done) step = await stream.next();
  await session.dispose();
  model.dispose();
  return step.value.text;
}

const greedy = ['--model', stories, '--temperature', '0', '--max-tokens', '40'];

test('generate --stop ends the text before the stop string; --threads is taken', async () => {
  const r = chaiAttn(['generate', ...greedy, '--prompt', 'Once upon a time', '--stop', 'Lily', '--stop', 'zzz', '--threads', '1']);
  expect(r.stderr).toBe('');
  expect(r.status).toBe(0);
  expect(r.stdout).toBe(`${await viaApi('Once upon a time', { maxNewTokens: 40, stop: ['Lily'] })}\n`);
  expect(r.stdout).not.toContain('Lily');
  const json = JSON.parse(chaiAttn(['generate', ...greedy, '--prompt', 'Once upon a time', '--stop', 'Lily', '--json']).stdout);
  expect(json.finishReason).toBe('stopString');
});

test('generate: the penalty flags and --min-p give what the API gives', async () => {
  const penalties = ['--frequency-penalty', '0.8', '--presence-penalty', '0.3', '--repeat-penalty', '1.3', '--repeat-last-n', '16'];
  const penalized = { frequencyPenalty: 0.8, presencePenalty: 0.3, repeatPenalty: 1.3, repeatLastN: 16, maxNewTokens: 40 };
  const r = chaiAttn(['generate', ...greedy, '--prompt', 'Once upon a time', ...penalties]);
  expect(r.status).toBe(0);
  expect(r.stdout).toBe(`${await viaApi('Once upon a time', penalized)}\n`);
  expect(r.stdout).not.toBe(`${await viaApi('Once upon a time', { maxNewTokens: 40 })}\n`);
  const sampled = chaiAttn(['generate', ...greedy, '--prompt', 'Once upon a time', '--min-p', '0.2', '--temperature', '1', '--seed', '7', '--top-k', '0', '--top-p', '1']);
  expect(sampled.stdout).toBe(`${await viaApi('Once upon a time', { maxNewTokens: 40, minP: 0.2, temperature: 1, seed: 7, topK: 0, topP: 1 })}\n`);
});

test('bad values name their flags', () => {
  for (const [flag, value] of [['--min-p', '2'], ['--frequency-penalty', '-3'], ['--repeat-penalty', '0'], ['--threads', '-1']]) {
    const r = chaiAttn(['generate', ...greedy, '--prompt', 'x', flag, value]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^chai-attn: E_INVALID_ARGUMENT: ${flag} must be`));
  }
});

test('chat --stop and --threads: each reply ends before the stop string', () => {
  const llama3 = path.join(models, 'synth-llama3.gguf');
  const whole = chaiAttn(['chat', '--model', llama3, '--temperature', '0', '--max-tokens', '12'], 'Hello there!\n');
  expect(whole.status).toBe(0);
  const reply = whole.stdout.split('\n')[0];
  const stop = reply.trim().split(/\s+/)[2];
  const r = chaiAttn(['chat', '--model', llama3, '--temperature', '0', '--max-tokens', '12', '--stop', stop, '--threads', '1'], 'Hello there!\n');
  expect(r.stderr).toBe('');
  expect(r.stdout).toBe(`${reply.slice(0, reply.indexOf(stop))}\n`);
});
