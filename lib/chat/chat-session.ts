// A conversation with a model: its chat template, a system prompt, the history, and one session
// whose KV cache is kept across turns, so that each turn evaluates only its new tokens.
import { ChaiError } from '../errors';
import type { Model } from '../model';
import { FinishReason, GeneratedToken, GenerateOptions, Session, SessionOptions } from '../session';
import { ChatMessage, ChatTemplate, encodeChatPrompt, RenderOptions } from './template';

export interface ChatSessionOptions extends SessionOptions {
  /** First message of the conversation, with role 'system'. */
  systemPrompt?: string;
  /** A Jinja chat template to use instead of the model's own `tokenizer.chat_template`. */
  template?: string;
  /** Extra template variables for every turn (for example `{ enable_thinking: false }` for Qwen3). */
  templateVariables?: RenderOptions['variables'];
}

export interface ChatReply {
  /** The assistant's message as it enters the history. */
  text: string;
  tokens: number[];
  /** 'endOfGeneration': the model ended its turn with an end-of-turn token. */
  finishReason: FinishReason;
  /** The whole conversation as tokens, up to the generation prompt of this turn. */
  promptTokens: number[];
  /** Of promptTokens, those already in the cache from earlier turns (not evaluated again). */
  reusedTokens: number;
  /** Of promptTokens, those read from the model's prefix cache (prefixCache option), such as a system prompt another chat computed. */
  cachedTokens: number;
}

/**
 * A chat over one model. Each turn renders the whole conversation with the chat template,
 * tokenizes it (special-token text parsed), keeps the cached prefix it shares with what the
 * session already holds and evaluates only the rest; generation stops at any end-of-turn token
 * of the vocabulary (EOS, `<|eot_id|>`, `<|im_end|>`, ...).
 */
export class ChatSession {
  readonly template: ChatTemplate;
  readonly session: Session;
  private readonly messages: ChatMessage[] = [];
  private readonly variables: RenderOptions['variables'];
  private busy = false;

  constructor(
    readonly model: Model,
    options: ChatSessionOptions = {},
  ) {
    this.template = options.template === undefined ? ChatTemplate.of(model) : ChatTemplate.forModel(model, options.template);
    this.variables = options.templateVariables;
    if (options.systemPrompt !== undefined) this.messages.push({ role: 'system', content: options.systemPrompt });
    this.session = model.createSession({ maxTokens: options.maxTokens, chai: options.chai, prefixCache: options.prefixCache });
  }

  /** The conversation so far (system prompt first when there is one). */
  get history(): readonly ChatMessage[] {
    return this.messages;
  }

  /** The prompt text of the conversation so far with `next` appended, as the template renders it. */
  render(next: readonly ChatMessage[] = []): string {
    return this.template.render([...this.messages, ...next], { addGenerationPrompt: true, variables: this.variables });
  }

  /**
   * Adds a user message and streams the assistant's reply; the iterator's return value is the
   * ChatReply, and the reply joins the history once the stream ends.
   */
  async *send(userText: string, options: GenerateOptions = {}): AsyncGenerator<GeneratedToken, ChatReply> {
    if (typeof userText !== 'string') throw new ChaiError('E_INVALID_ARGUMENT', 'a chat message must be a string');
    if (this.busy) throw new ChaiError('E_INVALID_ARGUMENT', 'a reply is still being generated in this chat');
    this.busy = true;
    try {
      const user: ChatMessage = { role: 'user', content: userText };
      const promptTokens = encodeChatPrompt(this.model.tokenizer, this.render([user]));
      const cached = this.session.tokens;
      let reused = 0;
      while (reused < cached.length && reused < promptTokens.length - 1 && cached[reused] === promptTokens[reused]) reused++;
      if (reused < cached.length) await this.rewind(reused);
      reused = this.session.tokens.length;

      const stream = this.session.generate(promptTokens.slice(reused), options);
      for (;;) {
        const step = await stream.next();
        if (step.done) {
          const result = step.value;
          this.messages.push(user, { role: 'assistant', content: result.text });
          return { text: result.text, tokens: result.tokens, finishReason: result.finishReason, promptTokens, reusedTokens: reused, cachedTokens: result.cachedTokens };
        }
        yield step.value;
      }
    } finally {
      this.busy = false;
    }
  }

  /** send() without streaming. */
  async reply(userText: string, options: GenerateOptions = {}): Promise<ChatReply> {
    const stream = this.send(userText, options);
    for (;;) {
      const step = await stream.next();
      if (step.done) return step.value;
    }
  }

  /** Drops the cache past `tokens`; a CHAI session that cannot go back that far starts over. */
  private async rewind(tokens: number): Promise<void> {
    try {
      await this.session.reset(tokens);
    } catch (e) {
      if (!(e instanceof ChaiError) || e.code !== 'E_INVALID_ARGUMENT') throw e;
      await this.session.reset(0);
    }
  }

  /** Forgets the conversation (the system prompt stays). */
  async clear(): Promise<void> {
    this.messages.splice(this.messages[0]?.role === 'system' ? 1 : 0);
    await this.session.reset(0);
  }

  async dispose(): Promise<void> {
    await this.session.dispose();
  }
}
