// Chat templates as the model file ships them (`tokenizer.chat_template`, Jinja), rendered with
// @huggingface/jinja, the renderer Hugging Face's JavaScript libraries use.
import { Template } from '@huggingface/jinja';
import { ChaiError } from '../errors';
import type { Model } from '../model';
import type { Tokenizer } from '../tokenizer';

export interface ChatMessage {
  /** 'system', 'user' or 'assistant' (templates may know other roles). */
  role: string;
  content: string;
}

export interface RenderOptions {
  /** End with the header that opens the assistant's turn (default true). */
  addGenerationPrompt?: boolean;
  /** Further template variables (for example `tools`, or `enable_thinking` for Qwen3). */
  variables?: Record<string, unknown>;
}

/** Messages to the prompt text a model was trained on. */
export type ChatRenderer = (messages: readonly ChatMessage[], options?: RenderOptions) => string;

/** A compiled chat template with the model's BOS/EOS texts. */
export class ChatTemplate {
  private readonly template: Template;

  constructor(
    readonly source: string,
    private readonly specialTokens: { bosToken: string; eosToken: string },
  ) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new ChaiError('E_MODEL_FORMAT', `the chat template does not parse: ${(e as Error).message}`);
    }
  }

  /** The template of a loaded model (E_UNSUPPORTED when its file has none). */
  static of(model: Model): ChatTemplate {
    const source = chatTemplateSource(model);
    if (source === null) {
      throw new ChaiError('E_UNSUPPORTED', "the model file has no chat template ('tokenizer.chat_template'); give one with the template option", { option: 'template' });
    }
    return ChatTemplate.forModel(model, source);
  }

  /** `source` with the BOS/EOS texts of `model`. */
  static forModel(model: Model, source: string): ChatTemplate {
    const text = (id: number | null): string => (id === null ? '' : model.tokenizer.tokenText(id));
    return new ChatTemplate(source, { bosToken: text(model.tokenizer.bos), eosToken: text(model.tokenizer.eos) });
  }

  render(messages: readonly ChatMessage[], options: RenderOptions = {}): string {
    for (const m of messages) {
      if (typeof m?.role !== 'string' || typeof m.content !== 'string') {
        throw new ChaiError('E_INVALID_ARGUMENT', 'every chat message needs a string role and a string content');
      }
    }
    try {
      return this.template.render({
        ...options.variables,
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.specialTokens.bosToken,
        eos_token: this.specialTokens.eosToken,
      });
    } catch (e) {
      throw new ChaiError('E_INVALID_ARGUMENT', `the chat template failed on these messages: ${(e as Error).message}`);
    }
  }
}

/** The model file's `tokenizer.chat_template`, or null when it has none. */
export function chatTemplateSource(model: Model): string | null {
  const source = model.metadata['tokenizer.chat_template'];
  return typeof source === 'string' && source.length > 0 ? source : null;
}

/**
 * A rendered prompt as tokens. With parseSpecial (what templates need) control-token text such as
 * `<|eot_id|>` becomes that token, and BOS is added only when the text does not already begin with
 * it (templates that write `{{ bos_token }}`); without it the text is plain text after the usual BOS.
 */
export function encodeChatPrompt(tokenizer: Tokenizer, prompt: string, parseSpecial = true): number[] {
  const startsWithBos = parseSpecial && tokenizer.bos !== null && prompt.startsWith(tokenizer.tokenText(tokenizer.bos));
  return tokenizer.encode(prompt, { parseSpecial, addBos: tokenizer.addBos && !startsWithBos });
}

/** The renderer of a model's own chat template, for anything that turns messages into a prompt. */
export function chatRenderer(model: Model, source?: string): ChatRenderer {
  const template = source === undefined ? ChatTemplate.of(model) : ChatTemplate.forModel(model, source);
  return (messages, options) => template.render(messages, options);
}
