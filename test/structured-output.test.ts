// Structured output end to end: generate(), ChatSession, the server's two endpoints and the CLI
// produce JSON that parses and satisfies the schema, on stories260K (SentencePiece, 512 tokens)
// and synth-llama3 (random weights, Llama 3's 128k byte-level vocabulary); schemas outside the
// subset are refused everywhere with the keyword named.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { ChatSession, GenerateOptions, GenerationResult, loadModel, Model, ResponseFormat, RunningServer, serveModel } from '../lib';
import { advance, startState } from '../lib/structured/automaton';
import { compileResponseFormat } from '../lib/structured/schema';
import { NESTED_SCHEMA, schemaViolation } from './json-schema-check';

const models = path.join(__dirname, '..', '..', 'shared', 'models');
const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
const TEAM: ResponseFormat = { type: 'json_schema', json_schema: { name: 'team', schema: NESTED_SCHEMA, strict: true } };

async function generate(model: Model, prompt: string, options: GenerateOptions): Promise<GenerationResult> {
  const session = model.createSession();
  try {
    const stream = session.generate(prompt, options);
    let streamed = '';
    for (;;) {
      const step = await stream.next();
      if (step.done) {
        expect(step.value.text.startsWith(streamed)).toBe(true);
        return step.value;
      }
      streamed += step.value.text;
    }
  } finally {
    await session.dispose();
  }
}

/** +10 on the tokens that write `"` or `}` alone (SentencePiece: also their byte tokens). */
function quoteAndBraceBias(model: Model): Record<number, number> {
  const t = model.tokenizer;
  const ids = [...Array(t.vocabSize).keys()].filter((id) => ['"', '}', ' "'].includes(Buffer.from(t.tokenBytes(id)).toString()));
  return Object.fromEntries(ids.map((id) => [id, 10]));
}

/** A complete generation is JSON that satisfies the schema; one cut short by maxNewTokens is a prefix of such JSON. */
function checkOutput(result: { text: string; finishReason: string }, format: ResponseFormat, schema: Record<string, unknown>): boolean {
  const reading = advance(startState(compileResponseFormat(format)!), new TextEncoder().encode(result.text));
  expect(reading).not.toBeNull();
  if (result.finishReason === 'maxNewTokens' || result.finishReason === 'length') {
    expect(() => JSON.parse(result.text)).toThrow();
    return false;
  }
  expect(['endOfGeneration', 'stop']).toContain(result.finishReason);
  expect(schemaViolation(JSON.parse(result.text), schema)).toBeNull();
  return true;
}

describe('generate() with a response format', () => {
  let stories: Model;
  let llama: Model;
  beforeAll(async () => {
    stories = await loadModel(path.join(models, 'stories260K.gguf'), { threads: 1 });
    llama = await loadModel(path.join(models, 'synth-llama3.gguf'), { threads: 1 });
  });
  afterAll(() => {
    stories.dispose();
    llama.dispose();
  });

  test('stories260K: the nested schema, greedy and sampled; every output parses and satisfies it', async () => {
    const greedy = await generate(stories, 'The team:', { responseFormat: TEAM, temperature: 0, maxNewTokens: 400 });
    expect(checkOutput(greedy, TEAM, NESTED_SCHEMA)).toBe(true);
    let complete = 0;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      if (checkOutput(await generate(stories, 'The team:', { responseFormat: TEAM, seed, maxNewTokens: 400 }), TEAM, NESTED_SCHEMA)) complete++;
    }
    expect(complete).toBeGreaterThanOrEqual(4); // seeds 2 and 4 are still writing a string after 400 tokens
  });

  test('synth-llama3 (random weights, 128k vocabulary): the nested schema; a top-level array of enum values', async () => {
    // Random weights rarely close a string or an array: at this seed the value completes within
    // 300 tokens (others run out of tokens, their text a viable prefix).
    const team = await generate(llama, 'The team:', { responseFormat: TEAM, temperature: 0.6, seed: 3, maxNewTokens: 300 });
    expect(checkOutput(team, TEAM, NESTED_SCHEMA)).toBe(true);
    const items = { enum: ['red', 'green', 7, null] };
    const list: ResponseFormat = { type: 'json_schema', json_schema: { name: 'list', schema: { type: 'array', items } } };
    for (const [seed, temperature] of [[0, 0], [1, 0.6]]) {
      expect(checkOutput(await generate(llama, 'Colors:', { responseFormat: list, temperature, seed, maxNewTokens: 100 }), list, { type: 'array', items })).toBe(true);
    }
  }, 180_000);

  test('json_object gives a JSON object', async () => {
    // A story model never stops adding keys on its own: a logit bias on the quote and the closing
    // brace lets it finish, and the mask keeps every token of the way valid.
    const r = await generate(stories, 'Data:', { responseFormat: { type: 'json_object' }, temperature: 0, maxNewTokens: 200, logitBias: quoteAndBraceBias(stories) });
    expect(checkOutput(r, { type: 'json_object' }, { type: 'object' })).toBe(true);
  });

  test('run out of maxNewTokens inside the value: finishReason maxNewTokens and the text is not complete JSON', async () => {
    const r = await generate(stories, 'The team:', { responseFormat: TEAM, temperature: 0, maxNewTokens: 5 });
    expect(r.finishReason).toBe('maxNewTokens');
    expect(r.tokens).toHaveLength(5);
    expect(checkOutput(r, TEAM, NESTED_SCHEMA)).toBe(false);
  });

  test('ChatSession: a reply constrained by its turn\'s responseFormat, the next turn free again', async () => {
    const chat = new ChatSession(llama, { systemPrompt: 'Answer in JSON.' });
    try {
      const flags: ResponseFormat = { type: 'json_schema', json_schema: { name: 'flags', schema: { type: 'object', properties: { ok: { type: 'boolean' }, level: { enum: ['low', 'high'] }, n: { type: ['integer', 'null'] } }, required: ['ok', 'level', 'n'] } } };
      const reply = await chat.reply('Status?', { responseFormat: flags, temperature: 0, maxNewTokens: 100 });
      expect(checkOutput(reply, flags, (flags as { json_schema: { schema: Record<string, unknown> } }).json_schema.schema)).toBe(true);
      expect(chat.history[chat.history.length - 1]).toEqual({ role: 'assistant', content: reply.text });
      const free = await chat.reply('Thanks', { temperature: 0, maxNewTokens: 8 });
      expect(free.text.startsWith('{')).toBe(false);
    } finally {
      await chat.dispose();
    }
  }, 180_000);

  test('an unsupported keyword is refused before the prompt is evaluated: E_INVALID_ARGUMENT naming it and where', async () => {
    const session = stories.createSession();
    const bad: ResponseFormat = { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { age: { type: 'integer', minimum: 0 } } } } };
    await expect(session.generate('x', { responseFormat: bad }).next()).rejects.toMatchObject({
      code: 'E_INVALID_ARGUMENT',
      option: 'responseFormat',
      message: expect.stringMatching(/^responseFormat: the JSON Schema keyword 'minimum' is not supported.*\(at #\/properties\/age\/minimum\)$/),
    });
    expect(session.tokens).toHaveLength(0);
    await session.dispose();
  });
});

describe('the server: response_format on /v1/chat/completions and /v1/completions', () => {
  let model: Model;
  let server: RunningServer;
  let openai: OpenAI;
  beforeAll(async () => {
    model = await loadModel(path.join(models, 'stories260K.gguf'), { threads: 1 });
    server = await serveModel(model, { port: 0 });
    openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server.close();
    model.dispose();
  });

  test('json_schema: the reply parses and satisfies the schema, and equals generate()\'s', async () => {
    const r = await openai.completions.create({ model: 'stories260K', prompt: 'The team:', max_tokens: 400, temperature: 0, response_format: TEAM } as Parameters<typeof openai.completions.create>[0] & { stream?: false });
    const choice = r.choices[0];
    expect(checkOutput({ text: choice.text, finishReason: choice.finish_reason }, TEAM, NESTED_SCHEMA)).toBe(true);
    expect(choice.finish_reason).toBe('stop');
    const alone = await generate(model, 'The team:', { responseFormat: TEAM, temperature: 0, maxNewTokens: 400 });
    expect(choice.text).toBe(alone.text);
  });

  test('json_object over chat, streamed: the joined deltas are a JSON object', async () => {
    const stream = await openai.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'data' }], max_tokens: 200, temperature: 0, response_format: { type: 'json_object' }, logit_bias: quoteAndBraceBias(model), stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(checkOutput({ text, finishReason: finish! }, { type: 'json_object' }, { type: 'object' })).toBe(true);
  });

  test('max_tokens inside the JSON: finish_reason length', async () => {
    const r = await openai.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'x' }], max_tokens: 4, temperature: 0, response_format: TEAM });
    expect(r.choices[0].finish_reason).toBe('length');
    expect(checkOutput({ text: r.choices[0].message.content!, finishReason: 'length' }, TEAM, NESTED_SCHEMA)).toBe(false);
  });

  test('an unsupported keyword: 400 naming response_format, the keyword and its place', async () => {
    const schema = { type: 'object', properties: { tags: { type: 'array', items: { type: 'string' }, uniqueItems: true } } };
    const refused = (await openai.chat.completions
      .create({ model: 'stories260K', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'json_schema', json_schema: { name: 't', schema } } })
      .catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect([refused.status, refused.param, refused.code]).toEqual([400, 'response_format', 'invalid_response_format']);
    expect(refused.message).toMatch(/response_format: the JSON Schema keyword 'uniqueItems' is not supported.*\(at #\/properties\/tags\/uniqueItems\)/);
  });
});

describe('the CLI: --json-schema FILE and --json-object', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chai-json-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]) => spawnSync(process.execPath, [cli, 'generate', '--model', path.join(models, 'stories260K.gguf'), '--prompt', 'The team:', ...args], { encoding: 'utf8', timeout: 120_000 });

  test('generate --json-schema prints JSON that satisfies the file\'s schema', () => {
    const file = path.join(dir, 'team.json');
    fs.writeFileSync(file, JSON.stringify(NESTED_SCHEMA));
    const r = run(['--json-schema', file, '--temperature', '0', '--max-tokens', '400', '--json']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; finishReason: string };
    expect(checkOutput(out, TEAM, NESTED_SCHEMA)).toBe(true);
  });

  test('an unsupported keyword, a file that is not JSON, both flags: one error line naming --json-schema', () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ type: 'object', properties: { a: { oneOf: [] } } }));
    const r = run(['--json-schema', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: --json-schema: the JSON Schema keyword 'oneOf' is not supported.*\(at #\/properties\/a\/oneOf\)\n$/);
    const notJson = path.join(dir, 'not.json');
    fs.writeFileSync(notJson, '{ type: object }');
    expect(run(['--json-schema', notJson]).stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: --json-schema: '.*not\.json' is not JSON: /);
    expect(run(['--json-schema', bad, '--json-object']).stderr).toMatch(/^chai-attn: E_INVALID_ARGUMENT: give --json-schema or --json-object, not both\n$/);
  });
});
