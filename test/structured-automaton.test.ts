// Structured output without a model: the schema subset (what is refused and how), the byte
// automaton on strings it must accept or reject, and the token mask against a brute-force check.
import path from 'node:path';
import { ChaiError, compileResponseFormat, loadModel } from '../lib';
import { accepts, advance, Frame, startState } from '../lib/structured/automaton';
import { compileJsonSchema, JsonGrammar } from '../lib/structured/schema';
import { JsonConstraint, Vocabulary } from '../lib/structured/token-mask';
import { NESTED_SCHEMA, schemaViolation } from './json-schema-check';

const models = path.join(__dirname, '..', '..', 'shared', 'models');
const utf8 = new TextEncoder();

function refusal(schema: unknown): ChaiError {
  try {
    compileJsonSchema(schema);
  } catch (error) {
    return error as ChaiError;
  }
  throw new Error(`${JSON.stringify(schema)} was not refused`);
}

describe('the schema subset', () => {
  test.each([
    [{ type: 'integer', minimum: 0 }, 'minimum', '#/minimum'],
    [{ type: 'object', properties: { a: { type: 'string', pattern: 'x' } } }, 'pattern', '#/properties/a/pattern'],
    [{ type: 'array', items: { type: 'object', properties: { b: { format: 'date' } } } }, 'format', '#/items/properties/b/format'],
    [{ anyOf: [{ type: 'string' }] }, 'anyOf', '#/anyOf'],
    [{ $ref: '#/$defs/x', $defs: {} }, '$ref', '#/$ref'],
    [{ type: 'array', minItems: 1 }, 'minItems', '#/minItems'],
    [{ type: 'object', properties: { 'a/b': { maxLength: 3 } } }, 'maxLength', '#/properties/a~1b/maxLength'],
  ])('%j is refused naming %s at %s', (schema, keyword, at) => {
    const e = refusal(schema);
    expect(e).toBeInstanceOf(ChaiError);
    expect(e.code).toBe('E_INVALID_ARGUMENT');
    expect(e.option).toBe('responseFormat');
    expect(e.message).toContain(`'${keyword}'`);
    expect(e.message).toContain(`(at ${at})`);
  });

  test('malformed uses of supported keywords are refused with what to fix', () => {
    expect(refusal({ type: 'object', additionalProperties: true }).message).toMatch(/only 'additionalProperties: false' is supported.*#\/additionalProperties/);
    expect(refusal({ type: 'object', properties: { a: {} }, required: ['b'] }).message).toMatch(/'required' names 'b', which 'properties' does not define/);
    expect(refusal({ type: 'text' }).message).toMatch(/'type' "text" is not one of object, array/);
    expect(refusal({ type: 'string', enum: [1, 2] }).message).toMatch(/no value of 'enum' has the type "string"/);
    expect(refusal({ type: 'array', items: [{ type: 'string' }] }).message).toMatch(/tuples are not supported/);
    expect(refusal({ type: 'string', properties: {} }).message).toMatch(/'properties' needs type 'object'/);
  });

  test('annotations (title, description, $schema, examples, default) are accepted and constrain nothing', () => {
    const annotated = compileJsonSchema({ $schema: 'https://json-schema.org/draft/2020-12/schema', title: 'T', type: 'object', properties: { a: { type: 'integer', description: 'd', examples: [1], default: 2 } }, required: ['a'] });
    const plain = compileJsonSchema({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] });
    for (const text of ['{"a":1}', '{"a":"x"}', '{}', '{"a":-20}']) expect(accepts(annotated, text)).toBe(accepts(plain, text));
  });

  test('response formats: text is no constraint, json_object any object, json_schema its schema; malformed ones are refused', () => {
    expect(compileResponseFormat({ type: 'text' })).toBeNull();
    expect(compileResponseFormat(undefined)).toBeNull();
    const object = compileResponseFormat({ type: 'json_object' })!;
    expect(accepts(object, '{"a":[1,{"b":null}],"c":"d"}')).toBe(true);
    expect(accepts(object, '[1]')).toBe(false);
    const schema = compileResponseFormat({ type: 'json_schema', json_schema: { name: 'n', schema: { type: 'integer' }, strict: true } })!;
    expect([accepts(schema, '12'), accepts(schema, '1.5')]).toEqual([true, false]);
    expect(() => compileResponseFormat({ type: 'json_schema', json_schema: { schema: {} } }, 'response_format')).toThrow(/^response_format: json_schema.name must be a non-empty string/);
    expect(() => compileResponseFormat({ type: 'regex' })).toThrow(/type must be 'text', 'json_object' or 'json_schema'/);
  });
});

describe('the byte automaton', () => {
  const string = compileJsonSchema({ type: 'string' });
  const nested = compileJsonSchema(NESTED_SCHEMA);

  test.each([
    ['"plain"', true],
    ['""', true],
    ['"\\" \\\\ \\/ \\b \\f \\n \\r \\t"', true],
    ['"\\u00e9\\uD83D\\uDE00\\u0000"', true],
    ['"é 日本語 😀"', true],
    ['"\\x"', false],
    ['"\\u12G4"', false],
    ['"\\u12"', false],
    ['"tab\there"', false],
    ['"new\nline"', false],
    ['"open', false],
    ['"a"b', false],
    ['"a" ', false],
    [' "a"', false],
  ])('string %j: %s', (text, ok) => {
    expect(accepts(string, text)).toBe(ok);
  });

  test('UTF-8 inside strings: well-formed sequences only (no overlongs, surrogates, bytes past U+10FFFF)', () => {
    const quoted = (...bytes: number[]) => advance(startState(string), [0x22, ...bytes, 0x22])?.canEnd() ?? false;
    expect(quoted(0xc3, 0xa9)).toBe(true); // é
    expect(quoted(0xe6, 0x97, 0xa5)).toBe(true); // 日
    expect(quoted(0xf0, 0x9f, 0x98, 0x80)).toBe(true); // 😀
    expect(quoted(0xf4, 0x8f, 0xbf, 0xbf)).toBe(true); // U+10FFFF
    expect(quoted(0xc0, 0x80)).toBe(false); // overlong NUL
    expect(quoted(0xe0, 0x80, 0x80)).toBe(false); // overlong
    expect(quoted(0xed, 0xa0, 0x80)).toBe(false); // a UTF-16 surrogate
    expect(quoted(0xf4, 0x90, 0x80, 0x80)).toBe(false); // past U+10FFFF
    expect(quoted(0xc3)).toBe(false); // cut short by the quote
    expect(quoted(0x80)).toBe(false); // a lone continuation byte
    expect(quoted(0xff)).toBe(false);
  });

  test.each([
    ['0', true, true],
    ['-0', true, true],
    ['1234567890123456', true, true],
    ['12345678901234567', false, false], // 17 digits: past what a double holds exactly
    ['01', false, false],
    ['-', false, false],
    ['1.5', true, false],
    ['1.', false, false],
    ['.5', false, false],
    ['-2.5e+10', true, false],
    ['1E-7', true, false],
    ['1e', false, false],
    ['1e123', false, false],
  ])('number %s: number %s, integer %s', (text, asNumber, asInteger) => {
    expect(accepts(compileJsonSchema({ type: 'number' }), text)).toBe(asNumber);
    expect(accepts(compileJsonSchema({ type: 'integer' }), text)).toBe(asInteger);
  });

  test('whitespace: none, one space, or a newline and at most 20 spaces or tabs, where JSON allows it', () => {
    const object = compileResponseFormat({ type: 'json_object' })!;
    expect(accepts(object, '{"a":1}')).toBe(true);
    expect(accepts(object, '{ "a" : 1 , "b" : [ 1 , 2 ] }')).toBe(true);
    expect(accepts(object, JSON.stringify({ a: [1, { b: null }] }, null, 2))).toBe(true);
    expect(accepts(object, '{\n\t\t"a": 1\n}')).toBe(true);
    expect(accepts(object, '{  "a":1}')).toBe(false); // two spaces
    expect(accepts(object, '{\n\n"a":1}')).toBe(false); // two newlines
    expect(accepts(object, `{\n${' '.repeat(20)}"a":1}`)).toBe(true);
    expect(accepts(object, `{\n${' '.repeat(21)}"a":1}`)).toBe(false);
    expect(accepts(object, ' {}')).toBe(false);
    expect(accepts(object, '{}\n')).toBe(false);
  });

  test('objects: the schema\'s keys in order, required ones present, no others; enums, consts and nullable types', () => {
    const good = { team: 'x', size: 3, members: [{ role: 'dev', age: 30, nickname: null }, { role: 'lead', age: 41, nickname: 'Al' }], home: { lat: -1.5, ok: true } };
    expect(accepts(nested, JSON.stringify(good))).toBe(true);
    expect(accepts(nested, JSON.stringify(good, null, 2))).toBe(true);
    expect(accepts(nested, JSON.stringify({ ...good, active: false }))).toBe(false); // out of the schema's order
    expect(accepts(nested, JSON.stringify({ team: 'x', size: 3, active: false, members: [], home: { lat: 0, ok: true } }))).toBe(true);
    const without = (key: string) => JSON.stringify(Object.fromEntries(Object.entries(good).filter(([k]) => k !== key)));
    expect(accepts(nested, without('size'))).toBe(false); // required
    expect(accepts(nested, JSON.stringify({ ...good, extra: 1 }))).toBe(false);
    const member = (m: object) => JSON.stringify({ ...good, members: [m] });
    expect(accepts(nested, member({ role: 'boss', age: 1, nickname: null }))).toBe(false); // enum
    expect(accepts(nested, member({ role: 'ops', age: 1.5, nickname: null }))).toBe(false); // integer
    expect(accepts(nested, member({ role: 'ops', age: 1, nickname: 3 }))).toBe(false); // string or null
    expect(accepts(nested, JSON.stringify({ ...good, home: { lat: 1, ok: false } }))).toBe(false); // const
    expect(accepts(nested, JSON.stringify({ ...good, size: '3' }))).toBe(false);
    expect(accepts(nested, '{"team":"x","size":3,"members":[],"home":{"lat":1,"ok":true},}')).toBe(false);
  });

  test('every text it accepts parses and satisfies the schema; random valid values are accepted', () => {
    let seed = 11;
    const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    const text = () => pick(['', 'a', 'é"\\', '日本 😀', '\n\t\u0001']);
    for (let i = 0; i < 200; i++) {
      const value: Record<string, unknown> = { team: text(), size: Math.floor(random() * 1e6) - 5e5 };
      if (random() < 0.5) value.active = random() < 0.5;
      value.members = Array.from({ length: Math.floor(random() * 3) }, () => ({ role: pick(['lead', 'dev', 'ops']), age: Math.floor(random() * 90), nickname: random() < 0.5 ? null : text() }));
      value.home = { lat: (random() - 0.5) * 180, ok: true };
      const json = JSON.stringify(value, null, random() < 0.5 ? 2 : undefined);
      expect(accepts(nested, json)).toBe(true);
      expect(schemaViolation(JSON.parse(json), NESTED_SCHEMA)).toBeNull();
    }
  });
});

/** A small vocabulary with the awkward cases: structure glued to text, escapes and UTF-8 split across tokens, byte tokens, an end token. */
function smallVocabulary(): { vocabulary: Vocabulary; eos: number } {
  const texts = ['{', '}', '[', ']', '"', ':', ',', ' ', '\n', '\t', '  ', '\n  ', '{"', '"}', '",', '":', '": "', '", "', '":"', '"}]', '}]', '},{', '}]}', ', "',
    'team', 'size', 'members', 'role', 'age', 'nickname', 'home', 'lat', 'ok', 'active', '"team', '"size":', 'tea', 'm"', 'lead', 'dev', 'de', 'v"', 'ops"', '"ops"',
    'true', 'tru', 'e', 'false', 'null', 'nu', 'll', '0', '1', '12', '-', '.', '5', 'e5', 'E', '+', '\\', '\\"', '\\u', '00e9', 'u', 'a', 'b', 'x y', 'é', '日本'];
  const bytes = texts.map((t) => utf8.encode(t));
  for (const b of [0xc3, 0xa9, 0xe6, 0x97, 0xa5, 0xf0, 0x9f, 0x98, 0x80, 0xed, 0xa0, 0xc0, 0xff, 0x00, 0x1f, 0x22, 0x5c]) bytes.push(Uint8Array.of(b));
  bytes.push(Uint8Array.of(0x22, 0xc3)); // a quote and half a character
  bytes.push(new Uint8Array(0)); // a control token: no text
  const eos = bytes.length;
  bytes.push(new Uint8Array(0));
  return { vocabulary: new Vocabulary(bytes, [eos]), eos };
}

/** What a token is worth from `state`, token by token: the mask's definition. */
function bruteForce(vocabulary: Vocabulary, state: Frame): Uint8Array {
  const out = new Uint8Array(vocabulary.size);
  for (let id = 0; id < vocabulary.size; id++) {
    if (vocabulary.endTokens.includes(id)) out[id] = state.canEnd() ? 1 : 0;
    else out[id] = vocabulary.tokenBytes(id).length > 0 && advance(state, vocabulary.tokenBytes(id)) !== null ? 1 : 0;
  }
  return out;
}

/** What apply() leaves finite in logits that were all finite (its mask, as allowedTokens() gives it). */
function applied(constraint: JsonConstraint, size: number): Uint8Array {
  const logits = new Float32Array(size).map((_, i) => (i % 7) - 3);
  constraint.apply(logits);
  return Uint8Array.from(logits, (x, i) => (x === (i % 7) - 3 ? 1 : x === -Infinity ? 0 : 2)); // 2: changed otherwise
}

/**
 * Random walks through the grammar, token by token: at every step the mask must equal the brute
 * force. Returns how many steps were checked.
 */
function checkWalks(grammar: JsonGrammar, vocabulary: Vocabulary, walks: number, maxSteps: number, seed: number): number {
  let s = seed;
  const random = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  let checked = 0;
  for (let w = 0; w < walks; w++) {
    const constraint = new JsonConstraint(grammar, vocabulary);
    let state: Frame = startState(grammar);
    for (let step = 0; step < maxSteps && !constraint.done; step++) {
      const mask = constraint.allowedTokens();
      const expected = bruteForce(vocabulary, state);
      const diff = [...mask.keys()].filter((id) => mask[id] !== expected[id]);
      expect(diff.map((id) => [id, Buffer.from(vocabulary.tokenBytes(id)).toString('latin1'), mask[id]])).toEqual([]);
      // A vocabulary this small can leave no way on (a literal needs a byte no token starts with).
      if (mask.includes(1)) expect(applied(constraint, vocabulary.size)).toEqual(mask);
      else expect(() => applied(constraint, vocabulary.size)).toThrow(/no token of this model's vocabulary continues/);
      checked++;
      const text = [...mask.keys()].filter((id) => mask[id] && !vocabulary.endTokens.includes(id));
      if (text.length === 0) break;
      const token = text[Math.floor(random() * text.length)];
      constraint.accept(token);
      state = advance(state, vocabulary.tokenBytes(token))!;
    }
  }
  return checked;
}

describe('the token mask against a brute-force check', () => {
  const { vocabulary } = smallVocabulary();
  const grammars: [string, JsonGrammar][] = [
    ['the nested schema', compileJsonSchema(NESTED_SCHEMA)],
    ['json_object', compileResponseFormat({ type: 'json_object' })!],
    ['a top-level number', compileJsonSchema({ type: 'number' })],
    ['a string enum', compileJsonSchema({ enum: ['lead', 'dev', 'x y', 'é'] })],
  ];

  test.each(grammars)('small vocabulary, %s: every step of 150 random walks', (_, grammar) => {
    expect(checkWalks(grammar, vocabulary, 150, 40, 5)).toBeGreaterThan(500);
  });

  test('the end token only where the value is complete; a finished value allows nothing else', () => {
    const { vocabulary: v, eos } = smallVocabulary();
    const id = (text: string) => [...Array(v.size).keys()].find((t) => Buffer.from(v.tokenBytes(t)).toString() === text)!;
    const integer = new JsonConstraint(compileJsonSchema({ type: 'integer' }), v);
    expect(integer.allowedTokens()[eos]).toBe(0);
    integer.accept(id('12'));
    expect([integer.allowedTokens()[eos], integer.complete, integer.done]).toEqual([1, true, false]);
    const object = new JsonConstraint(compileJsonSchema({ type: 'object', properties: {} }), v);
    object.accept(id('{'));
    object.accept(id('}'));
    expect(object.done).toBe(true);
    const mask = object.allowedTokens();
    expect([...mask.keys()].filter((t) => mask[t])).toEqual([eos]);
    expect(() => object.accept(id('}'))).toThrow(/does not continue the JSON text/);
  });

  test('stories260K (SentencePiece, byte-fallback tokens): every step of random walks', async () => {
    const model = await loadModel(path.join(models, 'stories260K.gguf'), { threads: 1 });
    try {
      const v = Vocabulary.of(model.tokenizer);
      expect(checkWalks(compileJsonSchema(NESTED_SCHEMA), v, 40, 60, 3)).toBeGreaterThan(500);
      expect(checkWalks(compileResponseFormat({ type: 'json_object' })!, v, 20, 60, 4)).toBeGreaterThan(200);
    } finally {
      model.dispose();
    }
  });

  test('synth-llama3 (128k byte-level BPE tokens): the states along a document', async () => {
    const model = await loadModel(path.join(models, 'synth-llama3.gguf'), { threads: 1 });
    try {
      const grammar = compileJsonSchema(NESTED_SCHEMA);
      const v = Vocabulary.of(model.tokenizer);
      const doc = JSON.stringify({ team: 'Zoë "Z" \\ 日本', size: 12, members: [{ role: 'ops', age: 7, nickname: null }], home: { lat: -0.25, ok: true } }, null, 1);
      const tokens = model.tokenizer.encode(doc, { addBos: false });
      const constraint = new JsonConstraint(grammar, v);
      let state = startState(grammar);
      for (const token of tokens) {
        const mask = constraint.allowedTokens();
        const expected = bruteForce(v, state);
        expect([...mask.keys()].filter((id) => mask[id] !== expected[id])).toEqual([]);
        const kept = applied(constraint, v.size);
        expect([...mask.keys()].filter((id) => kept[id] !== mask[id])).toEqual([]);
        expect(mask[token]).toBe(1);
        constraint.accept(token);
        state = advance(state, v.tokenBytes(token))!;
      }
      expect(constraint.done).toBe(true);
    } finally {
      model.dispose();
    }
  }, 120_000);
});
