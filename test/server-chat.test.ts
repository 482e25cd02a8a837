// `chai-attn serve` with a model's own chat template: synth-llama3.gguf (random weights, Llama 3
// template and vocabulary), driven by the official openai client and compared with ChatSession.
import path from 'node:path';
import OpenAI from 'openai';
import { chatFormatFor, ChatSession, ChatTemplate, encodeChatPrompt, loadModel, Model, plainChatFormat, RunningServer, serveModel } from '../lib';
import { argmax } from '../lib/sampling';

const models = path.join(__dirname, '..', '..', 'shared', 'models');
const LLAMA3 = path.join(models, 'synth-llama3.gguf');
const BOS = 128000;
const START_HEADER = 128006;
const EOT = 128009; // <|eot_id|>
const SYSTEM = 'Be brief.';
const USER = 'Hello there!';
const MESSAGES = [
  { role: 'system' as const, content: SYSTEM },
  { role: 'user' as const, content: USER },
];

describe('serve with the chat template of synth-llama3', () => {
  let model: Model;
  let server: RunningServer;
  let openai: OpenAI;
  beforeAll(async () => {
    model = await loadModel(LLAMA3, { device: 'cpu' });
    server = await serveModel(model, { port: 0, contextTokens: 512 });
    openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.close();
    model?.dispose();
  });

  test("the chat format is the model's template: same text as ChatTemplate, special tokens parsed, one BOS", async () => {
    const format = chatFormatFor(model);
    expect(format).not.toBe(plainChatFormat);
    const rendered = format.render(MESSAGES);
    expect(rendered).toBe(ChatTemplate.of(model).render(MESSAGES, { addGenerationPrompt: true }));
    expect(rendered.endsWith('<|start_header_id|>assistant<|end_header_id|>\n\n')).toBe(true);
    // OpenAI's 'developer' role is the templates' 'system'.
    expect(format.render([{ role: 'developer', content: SYSTEM }, MESSAGES[1]])).toBe(rendered);

    const tokens = encodeChatPrompt(model.tokenizer, rendered, format.parseSpecial);
    expect(tokens.filter((t) => t === BOS)).toEqual([BOS]);
    expect(tokens[0]).toBe(BOS);
    expect(tokens).toContain(START_HEADER);
    expect(tokens).toContain(EOT); // the system turn's end, one token

    // The same tokens ChatSession evaluates for its first turn.
    const chat = new ChatSession(model, { systemPrompt: SYSTEM, maxTokens: 64 });
    try {
      expect((await chat.reply(USER, { temperature: 0, maxNewTokens: 1 })).promptTokens).toEqual(tokens);
    } finally {
      await chat.dispose();
    }
  });

  test("a greedy chat completion equals ChatSession's first reply, streamed or not", async () => {
    const maxTokens = 12;
    const chat = new ChatSession(model, { systemPrompt: SYSTEM, maxTokens: 256 });
    const reply = await chat.reply(USER, { temperature: 0, maxNewTokens: maxTokens }).finally(() => chat.dispose());
    expect(reply.text.length).toBeGreaterThan(0);

    const r = await openai.chat.completions.create({ model: server.modelId, messages: MESSAGES, max_tokens: maxTokens, temperature: 0 });
    expect(r.choices[0].message.content).toBe(reply.text);
    expect(r.usage?.prompt_tokens).toBe(reply.promptTokens.length);
    expect(r.usage?.completion_tokens).toBe(reply.tokens.length);
    expect(r.choices[0].finish_reason).toBe(reply.finishReason === 'endOfGeneration' ? 'stop' : 'length');

    const stream = await openai.chat.completions.create({ model: server.modelId, messages: MESSAGES, max_tokens: maxTokens, temperature: 0, stream: true });
    let content = '';
    for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? '';
    expect(content).toBe(reply.text);
  });

  test("an end-of-turn token ends the reply with finish_reason 'stop' and never shows in the text", async () => {
    expect(model.tokenizer.endOfGeneration).toContain(EOT);
    // Random weights rarely pick <|eot_id|>. Along the greedy path, find the first step k > 0 where
    // <|eot_id|> trails the best token by less than at every earlier step: a logit_bias between the
    // two gaps leaves steps 0..k-1 unchanged and makes <|eot_id|> win at step k.
    const prompt = encodeChatPrompt(model.tokenizer, chatFormatFor(model).render(MESSAGES), true);
    const session = model.createSession({ maxTokens: 64 });
    const gaps: number[] = [];
    try {
      let logits = await session.evaluate(prompt);
      for (let i = 0; i < 16; i++) {
        const best = argmax(logits);
        gaps.push(logits[best] - logits[EOT]);
        logits = await session.evaluate([best]);
      }
    } finally {
      await session.dispose();
    }
    const k = gaps.findIndex((gap, i) => i > 0 && gap < Math.min(...gaps.slice(0, i)));
    expect(k).toBeGreaterThan(0);
    const bias = (gaps[k] + Math.min(...gaps.slice(0, k))) / 2;
    expect(bias).toBeLessThanOrEqual(100); // OpenAI's limit

    const chat = new ChatSession(model, { systemPrompt: SYSTEM, maxTokens: 64 });
    const reply = await chat.reply(USER, { temperature: 0, maxNewTokens: 24, logitBias: { [EOT]: bias } }).finally(() => chat.dispose());
    expect(reply.finishReason).toBe('endOfGeneration');
    expect(reply.tokens).toHaveLength(k);

    const r = await openai.chat.completions.create({ model: server.modelId, messages: MESSAGES, max_tokens: 24, temperature: 0, logit_bias: { [EOT]: bias } });
    expect(r.choices[0].finish_reason).toBe('stop');
    expect(r.usage?.completion_tokens).toBe(k);
    expect(r.choices[0].message.content).toBe(reply.text);
    expect(r.choices[0].message.content).not.toContain('<|eot_id|>');

    // Forced as the very first token: an empty reply, still 'stop'.
    const forced = await openai.chat.completions.create({ model: server.modelId, messages: MESSAGES, max_tokens: 8, temperature: 0, logit_bias: { [EOT]: 100 } });
    expect([forced.choices[0].finish_reason, forced.choices[0].message.content, forced.usage?.completion_tokens]).toEqual(['stop', '', 0]);
  });
});

test('a model without a chat template keeps the plain format', async () => {
  const stories = await loadModel(path.join(models, 'stories260K.gguf'), { device: 'cpu' });
  try {
    expect(chatFormatFor(stories)).toBe(plainChatFormat);
  } finally {
    stories.dispose();
  }
});
