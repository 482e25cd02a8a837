// Which tokens of the whole vocabulary keep the text on the grammar: every token is judged by its
// bytes (byte-fallback tokens such as <0x41> and multi-character tokens alike), from the state the
// text has reached, before sampling.
//
// Two paths, so that a step costs well under a millisecond on a 128k vocabulary:
// - Inside a string, almost every token is allowed and the answer depends on the surrounding
//   grammar only through tokens that close the string. So, per string sub-state (plain text, in
//   an escape, inside a UTF-8 character), the vocabulary is sorted once into tokens that stay
//   inside the string, tokens never allowed there, and tokens that close it; the latter are
//   checked by walking a trie of what follows their closing quote. Only the logits of the tokens
//   left out are written.
// - Anywhere else few tokens fit: the trie of all token byte strings is walked from the root with
//   the automaton's state stepped along each edge (states are immutable, so a branch costs one
//   step), pruning a subtree at its first byte that breaks the grammar; the logits are set to
//   -Infinity at once and those of the few tokens found written back.
import { ChaiError } from '../errors';
import type { Tokenizer } from '../tokenizer';
import { advance, Frame, startState, STRING_CLOSE, STRING_INVALID, STRING_STATES, StringFrame, stringTable } from './automaton';
import type { JsonGrammar } from './schema';

/** Byte strings with token ids as a trie in flat arrays; a node's edges (and its tokens) are contiguous. */
export class ByteTrie {
  /** Node n's edges are edgeStart[n] .. edgeStart[n + 1] - 1. */
  private readonly edgeStart: Int32Array;
  private readonly edgeByte: Uint8Array;
  private readonly edgeChild: Int32Array;
  private readonly tokenStart: Int32Array;
  private readonly tokenEnd: Int32Array;
  private readonly tokens: Int32Array;
  readonly nodes: number;

  constructor(ids: readonly number[], bytes: readonly Uint8Array[]) {
    // Byte strings as Latin-1 strings, so that the engine's own sort orders them byte-wise (a
    // prefix first); tokens with the same bytes share a key.
    const byKey = new Map<string, number[]>();
    ids.forEach((id, i) => {
      const key = Buffer.from(bytes[i].buffer, bytes[i].byteOffset, bytes[i].length).toString('latin1');
      const list = byKey.get(key);
      if (list) list.push(id);
      else byKey.set(key, [id]);
    });
    const keys = [...byKey.keys()].sort();
    // Nodes in depth-first order, made by walking the sorted keys with the path of the last one.
    const parent: number[] = [-1];
    const byte: number[] = [0];
    const tokenStart: number[] = [0];
    const tokenEnd: number[] = [0];
    const tokens: number[] = [];
    const path = [0];
    let previous = '';
    for (const key of keys) {
      let common = 0;
      while (common < previous.length && common < key.length && previous.charCodeAt(common) === key.charCodeAt(common)) common++;
      path.length = common + 1;
      for (let d = common; d < key.length; d++) {
        path.push(parent.length);
        parent.push(path[d]);
        byte.push(key.charCodeAt(d));
        tokenStart.push(tokens.length);
        tokenEnd.push(tokens.length);
      }
      // Sorted and distinct, so a key is never a prefix of the one before it: its node is the newest.
      tokens.push(...byKey.get(key)!);
      tokenEnd[tokenEnd.length - 1] = tokens.length;
      previous = key;
    }
    // A node's edges are its children, which were made in increasing byte order.
    const nodes = parent.length;
    const edgeStart = new Int32Array(nodes + 1);
    for (let n = 1; n < nodes; n++) edgeStart[parent[n] + 1]++;
    for (let n = 0; n < nodes; n++) edgeStart[n + 1] += edgeStart[n];
    const fill = edgeStart.slice(0, nodes);
    this.edgeByte = new Uint8Array(nodes);
    this.edgeChild = new Int32Array(nodes);
    for (let n = 1; n < nodes; n++) {
      const e = fill[parent[n]]++;
      this.edgeByte[e] = byte[n];
      this.edgeChild[e] = n;
    }
    this.nodes = nodes;
    this.edgeStart = edgeStart;
    this.tokenStart = Int32Array.from(tokenStart);
    this.tokenEnd = Int32Array.from(tokenEnd);
    this.tokens = Int32Array.from(tokens);
  }

  /** Appends to `out` every token whose bytes the automaton takes from `state` (node 0: the root). */
  collect(state: Frame, out: number[], node = 0): void {
    for (let t = this.tokenStart[node]; t < this.tokenEnd[node]; t++) out.push(this.tokens[t]);
    for (let e = this.edgeStart[node], end = this.edgeStart[node + 1]; e < end; e++) {
      const next = state.step(this.edgeByte[e]);
      if (next !== null) this.collect(next, out, this.edgeChild[e]);
    }
  }
}

/**
 * The vocabulary split for one string sub-state: tokens that stay inside the string (always
 * allowed there), tokens that close it (allowed where what follows their quote fits), and the
 * rest (never allowed there: control characters, broken UTF-8 or escapes, end and control tokens).
 */
interface StringClass {
  inside: Uint8Array;
  insideCount: number;
  /** What follows each closing token's quote (empty: it ends with the quote). */
  closing: ByteTrie;
  closingIds: Int32Array;
  never: Int32Array;
}

/**
 * A vocabulary as token byte strings, prepared for masking: the trie of every token that has
 * bytes (end-of-generation and control tokens have none and are handled apart), and the string
 * classes, each computed the first time a generation reaches its sub-state.
 */
export class Vocabulary {
  readonly size: number;
  readonly trie: ByteTrie;
  private readonly bytes: readonly Uint8Array[];
  private readonly textTokens: number[];
  private readonly strings: (StringClass | undefined)[] = new Array(STRING_STATES);
  private static readonly cache = new WeakMap<Tokenizer, Vocabulary>();

  /** `bytes[id]`: what token id writes; `endTokens`: those that end a generation. */
  constructor(
    bytes: readonly Uint8Array[],
    readonly endTokens: readonly number[],
  ) {
    this.size = bytes.length;
    this.bytes = bytes;
    const ends = new Set(endTokens);
    this.textTokens = [];
    for (let id = 0; id < bytes.length; id++) if (bytes[id].length > 0 && !ends.has(id)) this.textTokens.push(id);
    this.trie = new ByteTrie(
      this.textTokens,
      this.textTokens.map((id) => bytes[id]),
    );
  }

  /** The tokenizer's vocabulary, prepared once per tokenizer. */
  static of(tokenizer: Tokenizer): Vocabulary {
    let vocabulary = Vocabulary.cache.get(tokenizer);
    if (!vocabulary) {
      const bytes = Array.from({ length: tokenizer.vocabSize }, (_, id) => tokenizer.tokenBytes(id));
      vocabulary = new Vocabulary(bytes, tokenizer.endOfGeneration);
      Vocabulary.cache.set(tokenizer, vocabulary);
    }
    return vocabulary;
  }

  tokenBytes(token: number): Uint8Array {
    return this.bytes[token];
  }

  stringClass(state: number): StringClass {
    let c = this.strings[state];
    if (c) return c;
    const inside = new Uint8Array(this.size);
    const closingIds: number[] = [];
    const closingRest: Uint8Array[] = [];
    for (const id of this.textTokens) {
      const bytes = this.bytes[id];
      let s = state;
      let i = 0;
      for (; i < bytes.length; i++) {
        s = stringTable[s * 256 + bytes[i]];
        if (s < 0) break;
      }
      if (i === bytes.length) inside[id] = 1;
      else if (s === STRING_CLOSE) {
        closingIds.push(id);
        closingRest.push(bytes.subarray(i + 1));
      } else if (s !== STRING_INVALID) throw new ChaiError('E_INTERNAL', `json string table: unexpected entry ${s}`);
    }
    const closing = new Set(closingIds);
    const never: number[] = [];
    let insideCount = 0;
    for (let id = 0; id < this.size; id++) {
      if (inside[id]) insideCount++;
      else if (!closing.has(id)) never.push(id);
    }
    c = { inside, insideCount, closing: new ByteTrie(closingIds, closingRest), closingIds: Int32Array.from(closingIds), never: Int32Array.from(never) };
    this.strings[state] = c;
    return c;
  }
}

/** Restricts sampling to some tokens (TokenSampler.next takes one). */
export interface LogitMask {
  /** Sets the logits of the tokens not allowed next to -Infinity, in place. */
  apply(logits: Float32Array): void;
}

/**
 * One generation's constraint: the automaton's state after the tokens so far, and the tokens
 * allowed next. End-of-generation tokens are allowed only where the JSON value is complete.
 * Masking writes only the logits it must: inside a string, those of the tokens it leaves out
 * (a few thousand of a 128k vocabulary); elsewhere all of them at once, then the few allowed back.
 */
export class JsonConstraint implements LogitMask {
  private state: Frame;
  /** The allowed tokens that the last walk found (outside a string: all of them; inside: the closing ones). */
  private readonly found: number[] = [];

  constructor(
    grammar: JsonGrammar,
    readonly vocabulary: Vocabulary,
  ) {
    this.state = startState(grammar);
  }

  static forTokenizer(grammar: JsonGrammar, tokenizer: Tokenizer): JsonConstraint {
    return new JsonConstraint(grammar, Vocabulary.of(tokenizer));
  }

  /** Walks the trie from the current state: the string class when inside a string, and `found` filled. */
  private search(): StringClass | null {
    const state = this.state;
    this.found.length = 0;
    if (state instanceof StringFrame) {
      const c = this.vocabulary.stringClass(state.state);
      c.closing.collect(state.parent!.resume(-1), this.found);
      return c;
    }
    this.vocabulary.trie.collect(state, this.found);
    if (state.canEnd()) this.found.push(...this.vocabulary.endTokens);
    return null;
  }

  apply(logits: Float32Array): void {
    const string = this.search();
    const found = this.found;
    const kept = found.map((id) => logits[id]);
    if (string) {
      for (const id of string.never) logits[id] = -Infinity;
      for (const id of string.closingIds) logits[id] = -Infinity;
    } else {
      logits.fill(-Infinity);
    }
    for (let i = 0; i < found.length; i++) logits[found[i]] = kept[i];
    if (found.length === 0 && (string?.insideCount ?? 0) === 0) {
      throw new ChaiError('E_UNSUPPORTED', "no token of this model's vocabulary continues the structured output here");
    }
  }

  /** allowed[id] is 1 for each token that may come next, else 0 (what apply() keeps). */
  allowedTokens(): Uint8Array {
    const string = this.search();
    const allowed = string ? Uint8Array.from(string.inside) : new Uint8Array(this.vocabulary.size);
    for (const id of this.found) allowed[id] = 1;
    return allowed;
  }

  /** Moves past a sampled token (one the mask allowed). */
  accept(token: number): void {
    const bytes = this.vocabulary.tokenBytes(token);
    const next = bytes.length > 0 ? advance(this.state, bytes) : null;
    if (next === null) throw new ChaiError('E_INTERNAL', `json constraint: token ${token} does not continue the JSON text; it should have been masked`);
    this.state = next;
  }

  /** The JSON value is complete and nothing may follow it: the generation is over. */
  get done(): boolean {
    return this.state.parent === null;
  }

  /** The text so far is a complete JSON value (a number might still grow). */
  get complete(): boolean {
    return this.state.canEnd();
  }
}
