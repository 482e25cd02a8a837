import { ChatTemplate, chatTemplateSource } from '../chat/template';
import type { Model } from '../model';

/** One message of a chat, its content already flattened to text. */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
}

/**
 * How a chat becomes a prompt: chatFormatFor(model) gives the model's own chat template
 * (tokenizer.chat_template) when it has one, plainChatFormat otherwise. Generation always ends at
 * the model's end-of-generation tokens (EOS, `<|eot_id|>`, ...) too.
 */
export interface ChatFormat {
  /** The prompt text for `messages`, ending where the assistant's reply begins. */
  render(messages: readonly ChatMessage[]): string;
  /** Strings that end the assistant's turn besides the model's end-of-generation tokens. */
  stop: readonly string[];
  /**
   * Whether control-token text in the rendered prompt (`<|start_header_id|>`...) is read as those
   * tokens, BOS then added only when the text does not begin with it (see encodeChatPrompt). Default false.
   */
  parseSpecial?: boolean;
}

const SPEAKER: Record<ChatMessage['role'], string> = {
  system: 'System',
  developer: 'System',
  user: 'User',
  assistant: 'Assistant',
  tool: 'Tool',
};

/**
 * The fallback for models without a chat template: one "Speaker: text" paragraph per message,
 * then "Assistant:" for the reply, which ends at the next "\nUser:".
 *
 *     System: You tell short stories.
 *
 *     User: Tell me about a cat.
 *
 *     Assistant:
 */
export const plainChatFormat: ChatFormat = {
  render: (messages) => messages.map((m) => `${SPEAKER[m.role]}: ${m.content}\n\n`).join('') + 'Assistant:',
  stop: ['\nUser:'],
};

/**
 * The chat format a model is served with: its own chat template rendered with the generation
 * prompt (OpenAI's 'developer' role as 'system', which templates know), or plainChatFormat when
 * its file has no template.
 */
export function chatFormatFor(model: Model): ChatFormat {
  if (chatTemplateSource(model) === null) return plainChatFormat;
  const template = ChatTemplate.of(model);
  return {
    render: (messages) => template.render(messages.map((m) => (m.role === 'developer' ? { role: 'system', content: m.content } : m))),
    stop: [],
    parseSpecial: true,
  };
}
