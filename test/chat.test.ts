// Chat: templates from the model file rendered exactly as @huggingface/jinja renders them, a
// ChatSession that keeps its KV cache across turns and stops at every end-of-turn token, and
// `chai-attn chat` reading turns from a pipe.
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { ChaiError, ChatMessage, chatRenderer, ChatSession, loadModel, Model } from '../lib';

const SHARED = path.join(__dirname, '..', '..', 'shared');
const LLAMA3 = path.join(SHARED, 'models', 'synth-llama3.gguf');
const QWEN3 = path.join(SHARED, 'models', 'synth-qwen3.gguf');

const CONVERSATION: ChatMessage[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: '  Hello there!  ' },
  { role: 'assistant', content: 'Hi. What do you need?' },
  { role: 'user', content: 'Nothing. <|eot_id|> is just text here.' },
];

describe('ChatSession on synth-llama3 (Llama 3 template)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(LLAMA3, { device: 'cpu' });
  });
  afterAll(() => model.dispose());

  test('renders its template exactly as @huggingface/jinja does', () => {
    const source = model.metadata['tokenizer.chat_template'] as string;
    const direct = new Template(source).render({
      messages: CONVERSATION,
      add_generation_prompt: true,
      bos_token: '<|begin_of_text|>',
      eos_token: '<|eot_id|>',
    });
    expect(chatRenderer(model)(CONVERSATION)).toBe(direct);
    expect(direct).toBe(
      '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nHello there!<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\nHi. What do you need?<|eot_id|>' +
        '<|start_header_id|>user<|end_header_id|>\n\nNothing. <|eot_id|> is just text here.<|eot_id|>' +
        '<|start_header_id|>assistant<|end_header_id|>\n\n',
    );
    const chat = new ChatSession(model, { systemPrompt: 'Be brief.' });
    expect(chat.render([{ role: 'user', content: '  Hello there!  ' }])).toBe(
      new Template(source).render({ messages: CONVERSATION.slice(0, 2), add_generation_prompt: true, bos_token: '<|begin_of_text|>', eos_token: '<|eot_id|>' }),
    );
    return chat.dispose();
  });

  test('stops at every end-of-turn token, and keeps the cache across turns', async () => {
    const tokenizer = model.tokenizer;
    expect(tokenizer.endOfGeneration).toEqual([128001, 128009]); // <|end_of_text|>, <|eot_id|>
    const chat = new ChatSession(model, { systemPrompt: 'Be brief.', maxTokens: 256 });
    try {
      // Turn 1: a few greedy tokens.
      const first = await chat.reply('Hello there!', { temperature: 0, maxNewTokens: 6 });
      expect(first.promptTokens[0]).toBe(128000); // BOS once: the template writes it, encode adds none
      expect(first.promptTokens.filter((t) => t === 128000)).toHaveLength(1);
      expect(first.promptTokens).toContain(128006); // <|start_header_id|> parsed as one token
      expect(first.reusedTokens).toBe(0);
      // The cache holds the prompt and every generated token but the last (never evaluated).
      expect(first.finishReason).toBe('maxNewTokens');
      expect(chat.session.tokens.length).toBe(first.promptTokens.length + first.tokens.length - 1);

      // Turn 2 only evaluates what follows turn 1's prompt; its greedy reply equals a fresh
      // session's on the whole conversation.
      const second = await chat.reply('And then?', { temperature: 0, maxNewTokens: 6 });
      expect(second.reusedTokens).toBeGreaterThanOrEqual(first.promptTokens.length);
      expect(second.promptTokens.slice(0, first.promptTokens.length)).toEqual(first.promptTokens);
      const fresh = model.createSession({ maxTokens: 256 });
      const again: number[] = [];
      for await (const step of fresh.generate(second.promptTokens, { temperature: 0, maxNewTokens: 6 })) again.push(step.token);
      await fresh.dispose();
      expect(second.tokens).toEqual(again);

      // Each end-of-turn token ends the reply when the model picks it.
      for (const end of tokenizer.endOfGeneration) {
        const stop = await chat.reply('Stop.', { temperature: 0, maxNewTokens: 6, logitBias: { [end]: 1000 } });
        expect(stop.finishReason).toBe('endOfGeneration');
        expect(stop.tokens).toEqual([]);
      }
      expect(chat.history.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
    } finally {
      await chat.dispose();
    }
  });
});

describe('ChatSession on synth-qwen3 (ChatML template)', () => {
  test('stops at <|im_end|> and renders ChatML', async () => {
    const model = await loadModel(QWEN3, { device: 'cpu' });
    const chat = new ChatSession(model, { systemPrompt: 'Be brief.' });
    try {
      expect(chat.render([{ role: 'user', content: 'Hi' }])).toBe(
        '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
      );
      const imEnd = model.tokenizer.encode('<|im_end|>', { parseSpecial: true });
      expect(imEnd).toEqual([151645]);
      expect(model.tokenizer.isEndOfGeneration(151645)).toBe(true);
      const reply = await chat.reply('Hi', { temperature: 0, maxNewTokens: 4, logitBias: { 151645: 1000 } });
      expect(reply.finishReason).toBe('endOfGeneration');
    } finally {
      await chat.dispose();
      model.dispose();
    }
  });

  test('a model without a chat template is a typed error', async () => {
    const model = await loadModel(path.join(SHARED, 'models', 'stories260K.gguf'), { device: 'cpu' });
    try {
      expect(() => new ChatSession(model)).toThrow(ChaiError);
      expect(() => new ChatSession(model)).toThrow(/chat template/);
    } finally {
      model.dispose();
    }
  });
});

describe('chai-attn chat', () => {
  test('reads user turns from a pipe and streams one reply per turn', () => {
    const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
    const r = spawnSync(process.execPath, [cli, 'chat', '--model', LLAMA3, '--system', 'Be brief.', '--temperature', '0', '--max-tokens', '5'], {
      input: 'Hello there!\n\nAnd then?\n',
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n').filter(Boolean)).toHaveLength(2);
  });
});

describe('chai-attn chat on a terminal (a pseudo-terminal driven by test/keyboard.py)', () => {
  const cli = path.join(__dirname, '..', 'dist', 'cli', 'main.js');
  const PROMPT = '\u001b\\[0J> '; // readline clears the line, then writes the prompt
  const CTRL_C = '\u0003';
  const CTRL_D = '\u0004';
  type Step = { send: string } | { expect: string; timeout?: number };

  /** A chat whose greedy reply would run for thousands of tokens (seconds) unless stopped. */
  function typeInto(steps: Step[]): { output: string; seconds: number[]; failed: number | null; status: number } {
    const args = [path.join(__dirname, 'keyboard.py'), JSON.stringify(steps), process.execPath, cli, 'chat', '--model', LLAMA3, '--temperature', '0', '--max-tokens', '4000', '--context', '8192'];
    return JSON.parse(execFileSync('python3', args, { encoding: 'utf8', timeout: 120_000 }));
  }
  const turn = (text: string): Step[] => [{ send: `${text}\r` }, { expect: `${text.replace(/[?.]/g, '\\$&')}\r*\n` }, { expect: '\\S{10}' }];

  test('echoes what is typed; Ctrl-C stops a reply and returns to the prompt; Ctrl-D there exits 0', () => {
    const r = typeInto([{ expect: PROMPT }, ...turn('Hello there'), { send: CTRL_C }, { expect: PROMPT, timeout: 10 }, ...turn('And then?'), { send: CTRL_C }, { expect: PROMPT, timeout: 10 }, { send: CTRL_D }]);
    expect(r.failed).toBeNull();
    expect(r.output).toContain('Hello there');
    expect(r.output).toContain('And then?');
    // The whole reply takes seconds (4000 tokens); a stopped one gives the prompt back at once.
    expect(r.seconds[5]).toBeLessThan(2);
    expect(r.seconds[10]).toBeLessThan(2);
    expect(r.status).toBe(0);
  });

  test('Ctrl-C at the prompt exits 130, also as the second Ctrl-C after a stopped reply', () => {
    expect(typeInto([{ expect: PROMPT }, { send: CTRL_C }]).status).toBe(130);
    const r = typeInto([{ expect: PROMPT }, ...turn('Hello there'), { send: CTRL_C }, { expect: PROMPT, timeout: 10 }, { send: CTRL_C }]);
    expect(r.failed).toBeNull();
    expect(r.status).toBe(130);
  });
});
