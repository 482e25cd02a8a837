// Hugging Face tokenizer.json -> the GGUF tokenizer metadata that llama.cpp's converter would
// write, so that a Hugging Face folder gets the very tokenizer objects a GGUF file gets
// (tokenizerFromMetadata) and tokenizes identically.
import { ChaiError } from './errors';
import { Metadata, TokenType } from './tokenizer';

/** The parts of tokenizer.json this reads (the format of the `tokenizers` library). */
interface TokenizerJson {
  model?: {
    type?: string;
    vocab?: Record<string, number>;
    merges?: (string | [string, string])[];
    byte_fallback?: boolean;
    unk_token?: string | null;
  };
  added_tokens?: { id: number; content: string; special?: boolean }[];
  normalizer?: JsonStep | null;
  pre_tokenizer?: JsonStep | null;
  post_processor?: JsonStep | null;
}

/** A normalizer / pre-tokenizer / post-processor: a typed step, possibly a Sequence of steps. */
interface JsonStep {
  type?: string;
  normalizers?: JsonStep[];
  pretokenizers?: JsonStep[];
  processors?: JsonStep[];
  prepend?: string;
  pattern?: { String?: string; Regex?: string };
  content?: string;
  prepend_scheme?: string;
  add_prefix_space?: boolean;
  single?: { SpecialToken?: { id: string } }[];
  [key: string]: unknown;
}

/** What config.json and tokenizer_config.json add: special token ids and the BOS habit. */
export interface TokenizerJsonContext {
  /** config.json's vocab_size: the embedding rows; the vocabulary is padded up to it. */
  vocabSize?: number;
  config?: Record<string, unknown>;
  tokenizerConfig?: Record<string, unknown>;
}

const SPACE = '\u2581';

/** Pre-tokenizer split patterns (tokenizer.json spelling) by llama.cpp's `tokenizer.ggml.pre` name. */
const KNOWN_SPLITS: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'llama-bpe',
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'qwen2',
};

function formatError(message: string): never {
  throw new ChaiError('E_MODEL_FORMAT', `tokenizer.json: ${message}`);
}

function unsupported(message: string): never {
  throw new ChaiError('E_UNSUPPORTED', `tokenizer.json: ${message}`);
}

/** The steps of a possibly nested Sequence, flattened. */
function steps(step: JsonStep | null | undefined): JsonStep[] {
  if (!step) return [];
  const inner = step.normalizers ?? step.pretokenizers ?? step.processors;
  return step.type === 'Sequence' && Array.isArray(inner) ? inner.flatMap(steps) : [step];
}

/** The text of a special token as tokenizer_config.json writes it ("<s>" or { content: "<s>" }). */
function tokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

/**
 * A special token id, looked up as llama.cpp's converter does: tokenizer_config.json's token text
 * first, then config.json's `<name>_token_id` (the first of a list).
 */
function specialId(name: 'bos' | 'eos', context: TokenizerJsonContext, ids: Map<string, number>): number | undefined {
  const text = tokenText(context.tokenizerConfig?.[`${name}_token`]);
  if (text !== undefined && ids.has(text)) return ids.get(text);
  const fromConfig = context.config?.[`${name}_token_id`];
  const id = Array.isArray(fromConfig) ? fromConfig[0] : fromConfig;
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 ? id : undefined;
}

/** tokenizer_config.json's chat template: a string, or the 'default' of a list of named ones. */
function chatTemplate(tokenizerConfig: Record<string, unknown> | undefined): string | undefined {
  const template = tokenizerConfig?.chat_template;
  if (typeof template === 'string') return template;
  if (Array.isArray(template)) {
    const named = template.find((t: { name?: unknown }) => t?.name === 'default') as { template?: unknown } | undefined;
    if (typeof named?.template === 'string') return named.template;
  }
  return undefined;
}

/**
 * GGUF tokenizer metadata (tokenizer.ggml.*) for a tokenizer.json: SentencePiece-style BPE with
 * byte fallback (Llama 1/2, Mistral) becomes the 'llama' model, byte-level BPE (Llama 3, Qwen)
 * the 'gpt2' model. Anything else is E_UNSUPPORTED.
 */
export function metadataFromTokenizerJson(json: TokenizerJson, context: TokenizerJsonContext = {}): Metadata {
  const model = json.model;
  if (!model || typeof model !== 'object') formatError("no 'model' section");
  if (model.type !== 'BPE') unsupported(`tokenizer model '${String(model.type)}' is not supported (BPE is)`);
  const vocab = model.vocab;
  if (!vocab || typeof vocab !== 'object') formatError("'model.vocab' is missing");

  const added = json.added_tokens ?? [];
  let size = 0;
  for (const id of Object.values(vocab)) size = Math.max(size, id + 1);
  for (const t of added) size = Math.max(size, t.id + 1);
  // Token ids index the embedding: the tokenizer may not reach past its rows (it may stop short).
  if (context.vocabSize !== undefined) {
    if (size > context.vocabSize) formatError(`token ids reach ${size - 1}, past config.json's vocab_size of ${context.vocabSize}`);
    size = context.vocabSize;
  }
  const tokens: (string | undefined)[] = new Array(size).fill(undefined);
  const types = new Float64Array(size).fill(TokenType.Normal);
  const place = (text: string, id: number): void => {
    if (!Number.isInteger(id) || id < 0) formatError(`token '${text}' has an invalid id ${id}`);
    tokens[id] = text;
  };
  for (const [text, id] of Object.entries(vocab)) place(text, id);
  for (const t of added) {
    place(t.content, t.id);
    types[t.id] = t.special ? TokenType.Control : TokenType.UserDefined;
  }
  // Ids the files leave empty (the embedding is often padded past the tokenizer) get placeholder
  // tokens, as llama.cpp's converter writes them.
  for (let id = 0; id < size; id++) {
    if (tokens[id] === undefined) {
      tokens[id] = `[PAD${id}]`;
      types[id] = TokenType.Unused;
    }
  }
  const ids = new Map<string, number>();
  tokens.forEach((t, id) => ids.has(t!) || ids.set(t!, id));

  const merges = (model.merges ?? []).map((m) => (Array.isArray(m) ? `${m[0]} ${m[1]}` : m));
  const metadata: Metadata = { 'tokenizer.ggml.tokens': tokens as string[] };
  const preSteps = steps(json.pre_tokenizer);
  const normalizers = steps(json.normalizer);
  const metaspace = preSteps.find((s) => s.type === 'Metaspace');
  const spaceToMeta = normalizers.some((s) => s.type === 'Replace' && s.pattern?.String === ' ' && s.content === SPACE);

  if (model.byte_fallback || metaspace || spaceToMeta) {
    metadata['tokenizer.ggml.model'] = 'llama';
    // SentencePiece merges the adjacent pair whose joined piece scores highest; a BPE merge list
    // converted from it is ordered by that score, so a piece's score is minus its first merge rank.
    const scores = new Float64Array(size).fill(-(merges.length + size));
    merges.forEach((m, rank) => {
      const id = ids.get(m.replace(' ', ''));
      if (id !== undefined && scores[id] < -rank) scores[id] = -rank;
    });
    metadata['tokenizer.ggml.scores'] = scores;
    if (model.byte_fallback) {
      tokens.forEach((t, id) => {
        if (types[id] === TokenType.Normal && /^<0x[0-9A-F]{2}>$/.test(t!)) types[id] = TokenType.Byte;
      });
    }
    if (typeof model.unk_token === 'string' && ids.has(model.unk_token)) types[ids.get(model.unk_token)!] = TokenType.Unknown;
    const prepends = normalizers.some((s) => s.type === 'Prepend' && s.prepend === SPACE);
    const metaspacePrepends = metaspace !== undefined && (metaspace.prepend_scheme ?? (metaspace.add_prefix_space ? 'always' : 'never')) !== 'never';
    metadata['tokenizer.ggml.add_space_prefix'] = prepends || metaspacePrepends;
  } else if (preSteps.some((s) => s.type === 'ByteLevel')) {
    // Qwen's files normalize to NFC; llama.cpp's converter drops that step, and the GGUF is the
    // reference here. Any other normalizer would change the tokens.
    const other = normalizers.find((s) => s.type !== 'NFC');
    if (other) unsupported(`the normalizer '${String(other.type)}' is not supported with byte-level BPE (only NFC, which llama.cpp's converter drops too)`);
    metadata['tokenizer.ggml.model'] = 'gpt2';
    metadata['tokenizer.ggml.merges'] = merges;
    const byteLevel = preSteps.find((s) => s.type === 'ByteLevel')!;
    if (byteLevel.add_prefix_space) unsupported('ByteLevel add_prefix_space is not supported');
    const split = preSteps.find((s) => s.type === 'Split');
    if (split) {
      const pattern = split.pattern?.Regex ?? split.pattern?.String ?? '';
      const name = KNOWN_SPLITS[pattern];
      if (!name) unsupported(`the pre-tokenizer pattern ${JSON.stringify(pattern)} is not one this engine knows`);
      metadata['tokenizer.ggml.pre'] = name;
    } else {
      if (byteLevel.use_regex === false) unsupported('a ByteLevel pre-tokenizer without a split pattern is not supported');
      metadata['tokenizer.ggml.pre'] = 'gpt2';
    }
  } else {
    unsupported('neither SentencePiece-style (byte fallback, ▁ spaces) nor byte-level BPE');
  }
  metadata['tokenizer.ggml.token_type'] = types;

  const bos = specialId('bos', context, ids);
  const eos = specialId('eos', context, ids);
  if (bos !== undefined) metadata['tokenizer.ggml.bos_token_id'] = bos;
  if (eos !== undefined) metadata['tokenizer.ggml.eos_token_id'] = eos;
  const addBos = context.tokenizerConfig?.add_bos_token;
  if (typeof addBos === 'boolean') {
    metadata['tokenizer.ggml.add_bos_token'] = addBos;
  } else if (bos !== undefined) {
    const template = steps(json.post_processor).find((s) => s.type === 'TemplateProcessing');
    if (template) metadata['tokenizer.ggml.add_bos_token'] = (template.single ?? []).some((p) => p.SpecialToken?.id === tokens[bos]);
  }
  const template = chatTemplate(context.tokenizerConfig);
  if (template !== undefined) metadata['tokenizer.chat_template'] = template;
  return metadata;
}
