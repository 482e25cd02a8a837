// A deterministic pushdown automaton over bytes that accepts exactly the JSON texts of a compiled
// grammar (schema.ts). A state is an immutable stack of frames (each frame points to its parent),
// so a state is cloned for free: token masking (token-mask.ts) steps one state down many paths of
// the vocabulary's trie at once.
//
// Text it produces: no whitespace before or after the value; inside it, where JSON allows
// whitespace, nothing, one space, or one newline followed by at most 20 spaces or tabs (what
// pretty-printers write). Unbounded whitespace would let a small model pad forever. Numbers have
// at most 16 digits before and after the point and 2 in the exponent (beyond that JavaScript's
// JSON.parse loses them or overflows to Infinity). Object keys come in the schema's order.
import { ChaiError } from '../errors';
import { ANY_JSON_VALUE, JsonGrammar, LiteralNode, ValueNode } from './schema';

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MAX_INDENT = 20;
const MAX_DIGITS = 16;
const MAX_EXPONENT_DIGITS = 2;

/** Payload of a value that is not an object key. */
const NO_KEY = -1;

// ---- strings: a table over (sub-state, byte), shared with the vocabulary precomputation ----

/** Sub-states inside a string: plain text, escapes, and the bytes a UTF-8 character still needs. */
export const enum StringState {
  Plain = 0,
  Escape = 1,
  Hex0 = 2, // \u and 0..3 hex digits read
  Hex1 = 3,
  Hex2 = 4,
  Hex3 = 5,
  Cont1 = 6, // continuation bytes 80..BF still needed: 1, 2, 3
  Cont2 = 7,
  Cont3 = 8,
  AfterE0 = 9, // then A0..BF (no overlong 3-byte forms)
  AfterED = 10, // then 80..9F (no UTF-16 surrogates)
  AfterF0 = 11, // then 90..BF (no overlong 4-byte forms)
  AfterF4 = 12, // then 80..8F (nothing past U+10FFFF)
}
export const STRING_STATES = 13;
/** stringTable entries: the next sub-state, or these. */
export const STRING_INVALID = -1;
export const STRING_CLOSE = -2;

function buildStringTable(): Int8Array {
  const t = new Int8Array(STRING_STATES * 256).fill(STRING_INVALID);
  const set = (s: number, lo: number, hi: number, to: number): void => {
    for (let b = lo; b <= hi; b++) t[s * 256 + b] = to;
  };
  set(StringState.Plain, 0x20, 0x7f, StringState.Plain);
  set(StringState.Plain, QUOTE, QUOTE, STRING_CLOSE);
  set(StringState.Plain, BACKSLASH, BACKSLASH, StringState.Escape);
  set(StringState.Plain, 0xc2, 0xdf, StringState.Cont1);
  set(StringState.Plain, 0xe0, 0xe0, StringState.AfterE0);
  set(StringState.Plain, 0xe1, 0xec, StringState.Cont2);
  set(StringState.Plain, 0xed, 0xed, StringState.AfterED);
  set(StringState.Plain, 0xee, 0xef, StringState.Cont2);
  set(StringState.Plain, 0xf0, 0xf0, StringState.AfterF0);
  set(StringState.Plain, 0xf1, 0xf3, StringState.Cont3);
  set(StringState.Plain, 0xf4, 0xf4, StringState.AfterF4);
  for (const c of '"\\/bfnrt') set(StringState.Escape, c.charCodeAt(0), c.charCodeAt(0), StringState.Plain);
  set(StringState.Escape, 0x75, 0x75, StringState.Hex0); // u
  for (let s = StringState.Hex0; s <= StringState.Hex3; s++) {
    const to = s === StringState.Hex3 ? StringState.Plain : s + 1;
    set(s, 0x30, 0x39, to);
    set(s, 0x41, 0x46, to);
    set(s, 0x61, 0x66, to);
  }
  set(StringState.Cont1, 0x80, 0xbf, StringState.Plain);
  set(StringState.Cont2, 0x80, 0xbf, StringState.Cont1);
  set(StringState.Cont3, 0x80, 0xbf, StringState.Cont2);
  set(StringState.AfterE0, 0xa0, 0xbf, StringState.Cont1);
  set(StringState.AfterED, 0x80, 0x9f, StringState.Cont1);
  set(StringState.AfterF0, 0x90, 0xbf, StringState.Cont2);
  set(StringState.AfterF4, 0x80, 0x8f, StringState.Cont2);
  return t;
}

/** stringTable[state * 256 + byte]: the next StringState, STRING_INVALID or STRING_CLOSE. */
export const stringTable = buildStringTable();

// ---- whitespace: 0 none yet, 1 after one space, 2 + k after a newline and k indents ----

function whitespace(ws: number, byte: number): number {
  if (ws === 0) return byte === 0x20 ? 1 : byte === 0x0a ? 2 : -1;
  if (ws >= 2 && ws < 2 + MAX_INDENT && (byte === 0x20 || byte === 0x09)) return ws + 1;
  return -1;
}

const isDigit = (b: number): boolean => b >= 0x30 && b <= 0x39;

/** One state of the automaton: the innermost frame, its parents behind it. */
export abstract class Frame {
  constructor(readonly parent: Frame | null) {}
  /** The state after `byte`, or null when the text cannot go on with it. */
  abstract step(byte: number): Frame | null;
  /** Whether the text may end here: the whole value is complete. */
  canEnd(): boolean {
    return false;
  }
  /** This frame once a value it opened is complete (`key`: which property a key named). */
  resume(_key: number): Frame {
    throw new ChaiError('E_INTERNAL', `json automaton: ${this.constructor.name} has no value to resume`);
  }
}

/** After the whole value: nothing may follow. */
export class Done extends Frame {
  constructor() {
    super(null);
  }
  step(): null {
    return null;
  }
  canEnd(): boolean {
    return true;
  }
  resume(): Frame {
    return this;
  }
}

/** Opens a value of `node` with its first byte; null when the byte cannot start one. */
function open(node: ValueNode, byte: number, parent: Frame): Frame | null {
  switch (node.kind) {
    case 'string':
      return byte === QUOTE ? new StringFrame(parent, StringState.Plain) : null;
    case 'number':
      if (byte === 0x2d) return new NumberFrame(parent, node.integer, NumberPhase.Minus, 0);
      if (byte === 0x30) return new NumberFrame(parent, node.integer, NumberPhase.Zero, 1);
      return isDigit(byte) ? new NumberFrame(parent, node.integer, NumberPhase.Integer, 1) : null;
    case 'literals': {
      const next = node.root.next.get(byte);
      return next ? new LiteralFrame(parent, next) : null;
    }
    case 'array':
      return byte === 0x5b ? new ArrayFrame(parent, node.items, Phase.Open, 0) : null;
    case 'object':
      return byte === 0x7b ? new ObjectFrame(parent, node, Phase.Open, 0, 0) : null;
    case 'choice':
      for (const option of node.options) {
        const frame = open(option, byte, parent);
        if (frame) return frame;
      }
      return null;
  }
}

/** A value not begun yet (the start of the text). */
export class ValueFrame extends Frame {
  constructor(
    parent: Frame,
    readonly node: ValueNode,
  ) {
    super(parent);
  }
  step(byte: number): Frame | null {
    return open(this.node, byte, this.parent!);
  }
}

export class StringFrame extends Frame {
  constructor(
    parent: Frame,
    readonly state: StringState,
  ) {
    super(parent);
  }
  step(byte: number): Frame | null {
    const next = stringTable[this.state * 256 + byte];
    if (next === STRING_CLOSE) return this.parent!.resume(NO_KEY);
    return next === STRING_INVALID ? null : new StringFrame(this.parent!, next);
  }
}

/** Inside one of a set of literal texts (enum, const, true/false/null, object keys). */
export class LiteralFrame extends Frame {
  constructor(
    parent: Frame,
    readonly node: LiteralNode,
  ) {
    super(parent);
  }
  step(byte: number): Frame | null {
    const next = this.node.next.get(byte);
    if (next) return new LiteralFrame(this.parent!, next);
    // A complete literal ends at the first byte that cannot extend it (a number literal such as 1
    // may be followed by its parent's comma).
    return this.node.terminal ? this.parent!.resume(this.node.payload).step(byte) : null;
  }
  canEnd(): boolean {
    return this.node.terminal && this.parent!.resume(this.node.payload).canEnd();
  }
}

const enum NumberPhase {
  Minus, // '-' read: a digit must follow
  Zero, // a leading 0: '.', 'e' or the end
  Integer,
  Point, // '.' read: a digit must follow
  Fraction,
  Exponent, // 'e' read: a sign or a digit
  ExponentSign,
  ExponentDigits,
}

export class NumberFrame extends Frame {
  constructor(
    parent: Frame,
    readonly integer: boolean,
    readonly phase: NumberPhase,
    /** Digits in the current part (integer, fraction or exponent). */
    readonly digits: number,
  ) {
    super(parent);
  }
  private to(phase: NumberPhase, digits: number): NumberFrame {
    return new NumberFrame(this.parent!, this.integer, phase, digits);
  }
  private get complete(): boolean {
    const p = this.phase;
    return p === NumberPhase.Zero || p === NumberPhase.Integer || p === NumberPhase.Fraction || p === NumberPhase.ExponentDigits;
  }
  step(byte: number): Frame | null {
    const digit = isDigit(byte);
    const fractionOrExponent = !this.integer && (this.phase === NumberPhase.Zero || this.phase === NumberPhase.Integer);
    switch (this.phase) {
      case NumberPhase.Minus:
        if (byte === 0x30) return this.to(NumberPhase.Zero, 1);
        if (digit) return this.to(NumberPhase.Integer, 1);
        return null;
      case NumberPhase.Integer:
        if (digit) return this.digits < MAX_DIGITS ? this.to(NumberPhase.Integer, this.digits + 1) : null;
        break;
      case NumberPhase.Point:
        return digit ? this.to(NumberPhase.Fraction, 1) : null;
      case NumberPhase.Fraction:
        if (digit) return this.digits < MAX_DIGITS ? this.to(NumberPhase.Fraction, this.digits + 1) : null;
        if (byte === 0x65 || byte === 0x45) return this.to(NumberPhase.Exponent, 0);
        break;
      case NumberPhase.Exponent:
        if (byte === 0x2b || byte === 0x2d) return this.to(NumberPhase.ExponentSign, 0);
        return digit ? this.to(NumberPhase.ExponentDigits, 1) : null;
      case NumberPhase.ExponentSign:
        return digit ? this.to(NumberPhase.ExponentDigits, 1) : null;
      case NumberPhase.ExponentDigits:
        if (digit) return this.digits < MAX_EXPONENT_DIGITS ? this.to(NumberPhase.ExponentDigits, this.digits + 1) : null;
        break;
    }
    if (fractionOrExponent && byte === 0x2e) return this.to(NumberPhase.Point, 0);
    if (fractionOrExponent && (byte === 0x65 || byte === 0x45)) return this.to(NumberPhase.Exponent, 0);
    if (digit) return null; // after a leading zero
    return this.complete ? this.parent!.resume(NO_KEY).step(byte) : null;
  }
  canEnd(): boolean {
    return this.complete && this.parent!.resume(NO_KEY).canEnd();
  }
}

/** Where an object or array stands between its values. */
const enum Phase {
  Open, // after '{' or '['
  Comma, // after ','
  Key, // a key is being read (the frame is the key's parent)
  Colon, // after a key: ':' must come
  BeforeValue, // after ':'
  Value, // a value is being read (the frame is the value's parent)
  AfterValue, // ',' or the close may come
}

export class ArrayFrame extends Frame {
  constructor(
    parent: Frame,
    readonly items: ValueNode,
    readonly phase: Phase,
    readonly ws: number,
  ) {
    super(parent);
  }
  private to(phase: Phase, ws = 0): ArrayFrame {
    return new ArrayFrame(this.parent!, this.items, phase, ws);
  }
  step(byte: number): Frame | null {
    const ws = whitespace(this.ws, byte);
    if (ws >= 0) return this.to(this.phase, ws);
    if (this.phase === Phase.AfterValue) {
      if (byte === 0x2c) return this.to(Phase.Comma);
      return byte === 0x5d ? this.parent!.resume(NO_KEY) : null;
    }
    if (this.phase === Phase.Open && byte === 0x5d) return this.parent!.resume(NO_KEY);
    return open(this.items, byte, this.to(Phase.Value));
  }
  resume(): Frame {
    return this.to(Phase.AfterValue);
  }
}

export class ObjectFrame extends Frame {
  constructor(
    parent: Frame,
    readonly node: Extract<ValueNode, { kind: 'object' }>,
    readonly phase: Phase,
    /** Schema'd objects: the property being read, or (between values) the first one still to come. */
    readonly index: number,
    readonly ws: number,
  ) {
    super(parent);
  }
  private to(phase: Phase, index = this.index, ws = 0): ObjectFrame {
    return new ObjectFrame(this.parent!, this.node, phase, index, ws);
  }
  /** Whether '}' may come: no required property is left. */
  private mayClose(): boolean {
    const props = this.node.properties;
    if (props === null) return true;
    for (let i = this.index; i < props.length; i++) if (props[i].required) return false;
    return true;
  }
  private mayContinue(): boolean {
    return this.node.properties === null || this.index < this.node.properties.length;
  }
  private openKey(byte: number): Frame | null {
    if (this.node.properties === null) return byte === QUOTE ? new StringFrame(this.to(Phase.Key), StringState.Plain) : null;
    if (!this.mayContinue()) return null;
    const next = this.node.keys[this.index].next.get(byte);
    return next ? new LiteralFrame(this.to(Phase.Key), next) : null;
  }
  step(byte: number): Frame | null {
    const ws = whitespace(this.ws, byte);
    if (ws >= 0) return this.to(this.phase, this.index, ws);
    switch (this.phase) {
      case Phase.Open:
        if (byte === 0x7d) return this.mayClose() ? this.parent!.resume(NO_KEY) : null;
        return this.openKey(byte);
      case Phase.Comma:
        return this.openKey(byte);
      case Phase.Colon:
        return byte === 0x3a ? this.to(Phase.BeforeValue) : null;
      case Phase.BeforeValue: {
        const props = this.node.properties;
        return open(props === null ? ANY_JSON_VALUE : props[this.index].value, byte, this.to(Phase.Value));
      }
      case Phase.AfterValue:
        if (byte === 0x2c) return this.mayContinue() ? this.to(Phase.Comma) : null;
        if (byte === 0x7d) return this.mayClose() ? this.parent!.resume(NO_KEY) : null;
        return null;
      default:
        return null;
    }
  }
  resume(key: number): Frame {
    if (this.phase === Phase.Key) return this.to(Phase.Colon, this.node.properties === null ? 0 : key);
    return this.to(Phase.AfterValue, this.node.properties === null ? 0 : this.index + 1);
  }
}

/** The automaton's start state for a grammar. */
export function startState(grammar: JsonGrammar): Frame {
  return new ValueFrame(new Done(), grammar.root);
}

/** The state after `bytes` from `state`, or null when they break the grammar. */
export function advance(state: Frame, bytes: ArrayLike<number>): Frame | null {
  let s: Frame | null = state;
  for (let i = 0; i < bytes.length && s; i++) s = s.step(bytes[i]);
  return s;
}

/** Whether `text` is a complete JSON text of the grammar, as the automaton reads it (for tests and callers). */
export function accepts(grammar: JsonGrammar, text: string): boolean {
  return advance(startState(grammar), new TextEncoder().encode(text))?.canEnd() ?? false;
}
