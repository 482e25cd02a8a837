// Which tokens of the whole vocabulary keep the text on the grammar: every token is judged by its
// bytes (byte-fallback tokens such as <0x41> and multi-character tokens alike), from the state the
// text has reached, before sampling.
//
// Two paths, so that a step costs well under a millisecond on a 128k vocabulary:
// - Inside a string, almost every token is allowed and the answer depends on the surrounding
//   grammar only through tokens that close the string. So, per string sub-state (plain text, in
//   an escape, inside a UTF-8 character), the vocabulary is sorted once into tokens that stay
//   inside the string (a precomputed mask, copied) and tokens that close it; the latter are
//   checked by walking a trie of what follows their closing quote.
// - Anywhere else few tokens fit: the trie of all token byte strings is walked from the root with
//   the automaton's state stepped along each edge (states are immutable, so a branch costs one
//   step), pruning a subtree at its first byte that breaks the grammar.
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

  /** Marks in `allowed` every token whose bytes the automaton takes from `state` (node 0: the root). */
  walk(state: Frame, allowed: Uint8Array, node = 0): void {
    for (let t = this.tokenStart[node]; t < this.tokenEnd[node]; t++) allowed[this.tokens[t]] = 1;
    for (let e = this.edgeStart[node], end = this.edgeStart[node + 1]; e < end; e++) {
      const next = state.step(this.edgeByte[e]);
      if (next !== null) this.walk(next, allowed, this.edgeChild[e]);
    }
  }
}


/** The vocabulary split for one string sub-state: tokens that stay inside the string, and those that close it. */
interface StringClass {
  inside: Uint8Array;
  /** What follows each closing token's quote (empty: it ends with the quote). */
  closing: ByteTrie;
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
    c = { inside, closing: new ByteTrie(closingIds, closingRest) };
    this.strings[state] = c;
    return c;
  }
}

/**
 * One generation's constraint: the automaton's state after the tokens so far, and the tokens
 * allowed next. End-of-generation tokens are allowed only where the JSON value is complete.
 */
export class JsonConstraint {
  private state: Frame;
  private readonly allowed: Uint8Array;

  constructor(
    grammar: JsonGrammar,
    readonly vocabulary: Vocabulary,
  ) {
    this.state = startState(grammar);
    this.allowed = new Uint8Array(vocabulary.size);
  }

  static forTokenizer(grammar: JsonGrammar, tokenizer: Tokenizer): JsonConstraint {
    return new JsonConstraint(grammar, Vocabulary.of(tokenizer));
  }

  /**
   * allowed[id] is 1 for each token that may come next, else 0. The array is reused by the next
   * call: read it before then.
   */
  allowedTokens(): Uint8Array {
    const allowed = this.allowed;
    const state = this.state;
    if (state instanceof StringFrame) {
      const c = this.vocabulary.stringClass(state.state);
      allowed.set(c.inside);
      c.closing.walk(state.parent!.resume(-1), allowed);
    } else {
      allowed.fill(0);
      this.vocabulary.trie.walk(state, allowed);
    }
    if (state.canEnd()) for (const t of this.vocabulary.endTokens) allowed[t] = 1;
    return allowed;
  }

  /** Moves past a sampled token (one allowedTokens() allowed). */
  accept(token: number): void {
    const next = advance(this.state, this.vocabulary.tokenBytes(token));
    if (next === null || this.vocabulary.tokenBytes(token).length === 0) {
      throw new ChaiError('E_INTERNAL', `json constraint: token ${token} does not continue the JSON text; it should have been masked`);
    }
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
