/** One message of a chat, its content already flattened to text. */
export interface ChatMessage {
  role: 'system' | 'developer' | 'user' | 'assistant' | 'tool';
  content: string;
}

/**
 * How a chat becomes a prompt: a model's own chat template (tokenizer.chat_template) plugs in here
 * as a ChatFormat; models without one get plainChatFormat.
 */
export interface ChatFormat {
  /** The prompt text for `messages`, ending where the assistant's reply begins. */
  render(messages: readonly ChatMessage[]): string;
  /** Strings that end the assistant's turn besides the model's end-of-generation token. */
  stop: readonly string[];
  /** Whether BOS goes before the rendered text (default: the tokenizer's add_bos flag); false for templates that write it. */
  addBos?: boolean;
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
