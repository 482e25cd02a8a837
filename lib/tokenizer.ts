import { ChaiError, optionsArgument } from './errors';

/** Token types as GGUF stores them (llama.cpp's llama_token_type). */
export const enum TokenType {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

/** GGUF metadata values as the native reader hands them over. */
export type MetadataValue = number | boolean | string | string[] | boolean[] | Float64Array;
export type Metadata = Record<string, MetadataValue>;

export interface Tokenizer {
  /** 'llama' (SentencePiece) or 'gpt2' (byte-level BPE), as the model file names it. */
  readonly kind: 'llama' | 'gpt2';
  readonly vocabSize: number;
  readonly bos: number | null;
  readonly eos: number | null;
  /** Whether encode() puts BOS first by default (the file's add_bos_token flag). */
  readonly addBos: boolean;
  /**
   * Tokens that end a generation or a chat turn: EOS, EOT (`<|eot_id|>`, `<|im_end|>`, ...) and the
   * other end-of-turn tokens llama.cpp recognises by their text, ascending.
   */
  readonly endOfGeneration: readonly number[];
  /**
   * Text to token ids, as llama.cpp tokenizes it. Text that spells a control token (such as
   * `<|im_start|>`) becomes that token only with parseSpecial (default false: it is tokenized as
   * plain text); user-defined tokens (such as `<think>`) are matched either way.
   */
  encode(text: string, options?: EncodeOptions): number[];
  /** Token ids to text; control tokens (BOS, EOS) produce nothing. */
  decode(tokens: readonly number[]): string;
  /** The raw bytes one token stands for, for streaming (a UTF-8 character may span tokens). */
  tokenBytes(token: number): Uint8Array;
  /** The vocabulary entry as stored (special tokens: their text, such as `<|im_end|>`). */
  tokenText(token: number): string;
  isEndOfGeneration(token: number): boolean;
}

export interface EncodeOptions {
  /** Put BOS first (default: the model's add_bos_token flag). */
  addBos?: boolean;
  /** Turn the text of control tokens into those tokens (default false). */
  parseSpecial?: boolean;
}

function formatError(message: string): never {
  throw new ChaiError('E_MODEL_FORMAT', `tokenizer: ${message}`);
}

function stringArray(metadata: Metadata, key: string): string[] {
  const v = metadata[key];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) formatError(`metadata '${key}' must be an array of strings`);
  return v as string[];
}

function numberArray(metadata: Metadata, key: string, length: number, fallback: number): ArrayLike<number> {
  const v = metadata[key];
  if (v === undefined) return new Float64Array(length).fill(fallback);
  // isView, not instanceof: arrays made by the addon may come from another realm (e.g. under jest).
  if (!ArrayBuffer.isView(v) || (v as Float64Array).length !== length) formatError(`metadata '${key}' must hold ${length} numbers`);
  return v as Float64Array;
}

function optionalId(metadata: Metadata, key: string, vocabSize: number): number | null {
  const v = metadata[key];
  if (v === undefined) return null;
  if (typeof v !== 'number' || !Number.isInteger(v)) formatError(`metadata '${key}' must be an integer`);
  // llama.cpp writes 0xFFFFFFFF (and sometimes -1) for "no such token".
  if (v < 0 || v >= vocabSize) return null;
  return v;
}

function flag(metadata: Metadata, key: string, fallback: boolean): boolean {
  const v = metadata[key];
  return typeof v === 'boolean' ? v : fallback;
}

const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8');

// Token texts that llama.cpp treats as control tokens whatever their stored type, and those that
// end a generation (llama-vocab.cpp: "control-looking" tokens and the end-of-generation list).
const EOT_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<EOT>', '_<EOT>', '<｜end▁of▁sentence｜>', '</s>'];
const FIM_TEXTS = [
  '<|fim_prefix|>', '<fim-prefix>', '<｜fim▁begin｜>', '<PRE>', '<|fim_suffix|>', '<fim-suffix>', '<｜fim▁hole｜>', '<SUF>',
  '<|fim_middle|>', '<fim-middle>', '<｜fim▁end｜>', '<MID>', '<|fim_pad|>', '<fim-pad>', '<PAD>',
  '<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<|file_sep|>',
];
const FIM_END_TEXTS = ['<|fim_pad|>', '<fim-pad>', '<PAD>', '<|fim_repo|>', '<|repo_name|>', '<fim-repo>', '<REPO>', '<|file_sep|>'];
const EOG_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|eom_id|>', '<EOT>', '_<EOT>', '<|end_of_text|>'];

/** A piece of text still to tokenize, or a special token already matched. */
type Fragment = string | number;

abstract class BaseTokenizer implements Tokenizer {
  abstract readonly kind: 'llama' | 'gpt2';
  readonly vocabSize: number;
  readonly bos: number | null;
  readonly eos: number | null;
  readonly addBos: boolean;
  readonly endOfGeneration: readonly number[];
  protected readonly pieces: string[];
  protected readonly types: number[];
  protected readonly ids = new Map<string, number>();
  private readonly endSet: ReadonlySet<number>;
  // Control, user-defined and unknown tokens, longest text first (llama.cpp's matching order).
  private readonly specials: number[];
  private readonly byteCache = new Map<number, Uint8Array>();

  constructor(metadata: Metadata, addBosDefault: boolean) {
    this.pieces = stringArray(metadata, 'tokenizer.ggml.tokens');
    this.vocabSize = this.pieces.length;
    if (this.vocabSize === 0) formatError('the vocabulary is empty');
    this.types = Array.from(numberArray(metadata, 'tokenizer.ggml.token_type', this.vocabSize, TokenType.Normal));
    this.pieces.forEach((p, id) => {
      if (!this.ids.has(p)) this.ids.set(p, id);
    });
    this.bos = optionalId(metadata, 'tokenizer.ggml.bos_token_id', this.vocabSize);
    this.eos = optionalId(metadata, 'tokenizer.ggml.eos_token_id', this.vocabSize);
    const eot = optionalId(metadata, 'tokenizer.ggml.eot_token_id', this.vocabSize);
    const eom = optionalId(metadata, 'tokenizer.ggml.eom_token_id', this.vocabSize);
    this.addBos = flag(metadata, 'tokenizer.ggml.add_bos_token', addBosDefault) && this.bos !== null;

    const present = (texts: string[]): number[] => texts.flatMap((t) => (this.ids.has(t) ? [this.ids.get(t)!] : []));
    const controlLooking = [...(eot === null ? present(EOT_TEXTS) : []), ...(eom === null ? present(['<|eom_id|>']) : [])];
    controlLooking.push(...present(FIM_TEXTS), ...present(EOG_TEXTS));
    for (const id of controlLooking) this.types[id] = TokenType.Control;
    const ends = new Set<number>([...present(FIM_END_TEXTS), ...present(EOG_TEXTS)]);
    if (eot === null) present(EOT_TEXTS).forEach((id) => ends.add(id));
    for (const id of [this.eos, eot, eom]) if (id !== null) ends.add(id);
    this.endSet = ends;
    this.endOfGeneration = [...ends].sort((a, b) => a - b);

    const special = (t: number): boolean => t === TokenType.Control || t === TokenType.UserDefined || t === TokenType.Unknown;
    this.specials = this.types.flatMap((t, id) => (special(t) ? [id] : []));
    this.specials.sort((a, b) => this.pieces[b].length - this.pieces[a].length || a - b);
  }

  encode(text: string, options?: EncodeOptions): number[] {
    if (typeof text !== 'string') throw new ChaiError('E_INVALID_ARGUMENT', `encode takes a string, got ${text === null ? 'null' : typeof text}`);
    const { addBos, parseSpecial } = optionsArgument(options, 'encode');
    const out: number[] = [];
    let afterSpecial = true; // the start of the text counts as following a special token
    for (const fragment of this.partition(text, parseSpecial ?? false)) {
      if (typeof fragment === 'number') {
        out.push(fragment);
        afterSpecial = true;
      } else {
        out.push(...this.encodeText(fragment, afterSpecial));
        afterSpecial = false;
      }
    }
    const add = addBos ?? this.addBos;
    return add && this.bos !== null ? [this.bos, ...out] : out;
  }

  /** Splits text at special-token text: user-defined tokens always, control tokens when asked. */
  private partition(text: string, parseSpecial: boolean): Fragment[] {
    let fragments: Fragment[] = text.length > 0 ? [text] : [];
    for (const id of this.specials) {
      if (!parseSpecial && this.types[id] !== TokenType.UserDefined) continue;
      const piece = this.pieces[id];
      if (piece.length === 0 || !fragments.some((f) => typeof f === 'string' && f.includes(piece))) continue;
      fragments = fragments.flatMap((f) => {
        if (typeof f !== 'string') return [f];
        const parts: Fragment[] = [];
        f.split(piece).forEach((raw, i) => {
          if (i > 0) parts.push(id);
          if (raw.length > 0) parts.push(raw);
        });
        return parts;
      });
    }
    return fragments;
  }

  /** Tokens of plain text (no special tokens in it); afterSpecial: it starts the text or follows a special token. */
  protected abstract encodeText(text: string, afterSpecial: boolean): number[];
  protected abstract pieceBytes(token: number): Uint8Array;

  private checkId(token: number): void {
    if (!Number.isInteger(token) || token < 0 || token >= this.vocabSize) {
      throw new ChaiError('E_INVALID_ARGUMENT', `token id ${token} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  tokenBytes(token: number): Uint8Array {
    this.checkId(token);
    let bytes = this.byteCache.get(token);
    if (!bytes) {
      bytes = this.types[token] === TokenType.Control ? new Uint8Array(0) : this.pieceBytes(token);
      this.byteCache.set(token, bytes);
    }
    return bytes;
  }

  tokenText(token: number): string {
    this.checkId(token);
    return this.pieces[token];
  }

  decode(tokens: readonly number[]): string {
    if (!Array.isArray(tokens) && !ArrayBuffer.isView(tokens)) {
      throw new ChaiError('E_INVALID_ARGUMENT', `decode takes an array of token ids, got ${tokens === null ? 'null' : typeof tokens}`);
    }
    const parts = Array.from(tokens, (t) => this.tokenBytes(t));
    const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      bytes.set(p, at);
      at += p.length;
    }
    return this.finishDecode(utf8Decoder.decode(bytes), tokens);
  }

  protected finishDecode(text: string, _tokens: readonly number[]): string {
    return text;
  }

  isEndOfGeneration(token: number): boolean {
    return this.endSet.has(token);
  }
}

const SPACE = '\u2581'; // '▁', SentencePiece's visible space

/** A bigram candidate in SentencePiece merging: higher score first, then leftmost. */
interface Bigram {
  left: number;
  right: number;
  score: number;
  size: number;
}

/** Binary max-heap ordered by score, ties broken by lower `left` (llama.cpp's comparator). */
class BigramQueue {
  private readonly items: Bigram[] = [];
  get size(): number {
    return this.items.length;
  }
  private before(a: Bigram, b: Bigram): boolean {
    return a.score > b.score || (a.score === b.score && a.left < b.left);
  }
  push(b: Bigram): void {
    const items = this.items;
    items.push(b);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i], items[parent])) break;
      [items[i], items[parent]] = [items[parent], items[i]];
      i = parent;
    }
  }
  pop(): Bigram {
    const items = this.items;
    const top = items[0];
    const last = items.pop()!;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < items.length && this.before(items[l], items[best])) best = l;
        if (r < items.length && this.before(items[r], items[best])) best = r;
        if (best === i) break;
        [items[i], items[best]] = [items[best], items[i]];
        i = best;
      }
    }
    return top;
  }
}

/** SentencePiece as llama.cpp runs it from GGUF metadata: score-driven bigram merges, byte fallback. */
export class SentencePieceTokenizer extends BaseTokenizer {
  readonly kind = 'llama' as const;
  private readonly scores: ArrayLike<number>;
  private readonly addSpacePrefix: boolean;
  private readonly byteTokens: number[] = [];

  constructor(metadata: Metadata) {
    super(metadata, true);
    this.scores = numberArray(metadata, 'tokenizer.ggml.scores', this.vocabSize, 0);
    this.addSpacePrefix = flag(metadata, 'tokenizer.ggml.add_space_prefix', true);
    for (let b = 0; b < 256; b++) {
      const id = this.ids.get(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
      this.byteTokens.push(id ?? -1);
    }
  }

  protected encodeText(text: string, afterSpecial: boolean): number[] {
    const normalized = (this.addSpacePrefix && afterSpecial ? ' ' + text : text).replace(/ /g, SPACE);
    // Symbols start as single characters (code points) in a doubly linked list.
    const chars = Array.from(normalized);
    const texts = chars.slice();
    const prev = chars.map((_, i) => i - 1);
    const next = chars.map((_, i) => (i + 1 < chars.length ? i + 1 : -1));
    const alive = chars.map(() => true);
    const queue = new BigramQueue();
    const revMerge = new Map<string, [number, number]>();

    const tryBigram = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const merged = texts[left] + texts[right];
      const id = this.ids.get(merged);
      if (id === undefined) return;
      queue.push({ left, right, score: this.scores[id], size: merged.length });
      revMerge.set(merged, [left, right]);
    };
    for (let i = 1; i < chars.length; i++) tryBigram(i - 1, i);

    while (queue.size > 0) {
      const b = queue.pop();
      // Skip candidates made stale by an earlier merge.
      if (!alive[b.left] || !alive[b.right] || texts[b.left].length + texts[b.right].length !== b.size) continue;
      texts[b.left] += texts[b.right];
      alive[b.right] = false;
      next[b.left] = next[b.right];
      if (next[b.right] >= 0) prev[next[b.right]] = b.left;
      tryBigram(prev[b.left], b.left);
      tryBigram(b.left, next[b.left]);
    }

    const out: number[] = [];
    const resegment = (symbol: string): void => {
      const id = this.ids.get(symbol);
      if (id !== undefined) {
        out.push(id);
        return;
      }
      const parts = revMerge.get(symbol);
      if (!parts) {
        for (const byte of utf8.encode(symbol)) {
          const t = this.byteTokens[byte];
          if (t < 0) formatError(`no byte-fallback token <0x${byte.toString(16).toUpperCase().padStart(2, '0')}> in the vocabulary`);
          out.push(t);
        }
        return;
      }
      resegment(texts[parts[0]]);
      resegment(texts[parts[1]]);
    };
    for (let i = 0; i >= 0 && i < chars.length; i = next[i]) resegment(texts[i]);
    return out;
  }

  protected pieceBytes(token: number): Uint8Array {
    const piece = this.pieces[token];
    switch (this.types[token]) {
      case TokenType.Byte: {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
        return m ? Uint8Array.of(parseInt(m[1], 16)) : utf8.encode(piece);
      }
      case TokenType.Unknown:
        return utf8.encode('\u2585');
      default:
        return utf8.encode(piece.replace(/\u2581/g, ' '));
    }
  }

  /** Undo the space that encode() put in front of the text. */
  // llama.cpp drops the first space of the text whichever token made it (a '▁' piece or the
  // byte token <0x20>).
  protected finishDecode(text: string, _tokens: readonly number[]): string {
    return this.addSpacePrefix && text.startsWith(' ') ? text.slice(1) : text;
  }
}

/** GPT-2's reversible map from bytes to printable code points. */
function byteLevelMaps(): { toChar: string[]; toByte: Map<string, number> } {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  const toChar: string[] = new Array(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) toChar[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  return { toChar, toByte: new Map(toChar.map((c, b) => [c, b])) };
}

/** Pre-tokenizer patterns by `tokenizer.ggml.pre`, as llama.cpp splits text before BPE. */
const PRE_TOKENIZERS: Record<string, RegExp> = {
  gpt2: /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu,
  llama3:
    /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu,
};
PRE_TOKENIZERS['llama-bpe'] = PRE_TOKENIZERS.llama3;
// Qwen2/2.5/3: llama3's pattern with single digits.
PRE_TOKENIZERS.qwen2 =
  /(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+/gu;
PRE_TOKENIZERS.default = PRE_TOKENIZERS.gpt2;

/** Byte-level BPE (the GGUF 'gpt2' model): pre-split, then merges by rank within each piece. */
export class BytePairTokenizer extends BaseTokenizer {
  readonly kind = 'gpt2' as const;
  private readonly ranks = new Map<string, number>();
  private readonly pattern: RegExp;
  private readonly maps = byteLevelMaps();
  private readonly cache = new Map<string, number[]>();

  constructor(metadata: Metadata) {
    super(metadata, false);
    stringArray(metadata, 'tokenizer.ggml.merges').forEach((m, rank) => {
      if (!this.ranks.has(m)) this.ranks.set(m, rank);
    });
    const pre = typeof metadata['tokenizer.ggml.pre'] === 'string' ? (metadata['tokenizer.ggml.pre'] as string) : 'default';
    const pattern = PRE_TOKENIZERS[pre];
    if (!pattern) {
      throw new ChaiError('E_UNSUPPORTED', `BPE pre-tokenizer '${pre}' is not supported (supported: ${Object.keys(PRE_TOKENIZERS).join(', ')})`);
    }
    this.pattern = pattern;
  }

  private bpe(word: string): number[] {
    const cached = this.cache.get(word);
    if (cached) return cached;
    let parts = Array.from(word);
    for (;;) {
      let best = -1;
      let bestRank = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const rank = this.ranks.get(`${parts[i]} ${parts[i + 1]}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          best = i;
        }
      }
      if (best < 0) break;
      parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
    }
    const ids = parts.flatMap((p) => {
      const id = this.ids.get(p);
      if (id !== undefined) return [id];
      // A symbol without a token: fall back to its single byte-characters.
      return Array.from(p).map((ch) => this.ids.get(ch) ?? formatError(`no token for byte-level symbol '${ch}'`));
    });
    this.cache.set(word, ids);
    return ids;
  }

  protected encodeText(text: string): number[] {
    const out: number[] = [];
    for (const match of text.matchAll(this.pattern)) {
      const word = Array.from(utf8.encode(match[0]), (b) => this.maps.toChar[b]).join('');
      out.push(...this.bpe(word));
    }
    return out;
  }

  protected pieceBytes(token: number): Uint8Array {
    const piece = this.pieces[token];
    if (this.types[token] === TokenType.UserDefined) return utf8.encode(piece);
    const bytes: number[] = [];
    for (const ch of piece) {
      const b = this.maps.toByte.get(ch);
      if (b === undefined) return utf8.encode(piece); // not byte-level text: take it literally
      bytes.push(b);
    }
    return Uint8Array.from(bytes);
  }
}

/** The tokenizer a GGUF file describes. */
export function tokenizerFromMetadata(metadata: Metadata): Tokenizer {
  const model = metadata['tokenizer.ggml.model'];
  if (model === 'llama') return new SentencePieceTokenizer(metadata);
  if (model === 'gpt2') return new BytePairTokenizer(metadata);
  if (model === undefined) formatError("the model file has no 'tokenizer.ggml.model'");
  throw new ChaiError('E_UNSUPPORTED', `tokenizer model '${String(model)}' is not supported (supported: llama, gpt2)`);
}

/** Turns a stream of tokens into text, holding back bytes of UTF-8 characters not yet complete. */
export class StreamingDecoder {
  private readonly decoder = new TextDecoder('utf-8');
  constructor(private readonly tokenizer: Tokenizer) {}
  push(token: number): string {
    return this.decoder.decode(this.tokenizer.tokenBytes(token), { stream: true });
  }
  flush(): string {
    return this.decoder.decode();
  }
}
