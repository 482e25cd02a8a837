import { BytePairTokenizer, ChaiError, Metadata, SentencePieceTokenizer, StreamingDecoder } from '../lib';

// A byte-level BPE vocabulary: the 256 byte characters, then merged symbols in merge order.
function gpt2Metadata(extra: Partial<Metadata> = {}): Metadata {
  const printable: number[] = [];
  for (let b = 33; b <= 126; b++) printable.push(b);
  for (let b = 161; b <= 172; b++) printable.push(b);
  for (let b = 174; b <= 255; b++) printable.push(b);
  let next = 0;
  const byteChar: string[] = [];
  for (let b = 0; b < 256; b++) byteChar.push(String.fromCodePoint(printable.includes(b) ? b : 256 + next++));
  const merges = ['Ġ t', 'h e', 'Ġt he', 'l l', 'e ll', 'h ell', 'hell o', 'Ġ w'];
  const tokens = [...byteChar, ...merges.map((m) => m.replace(' ', '')), '<|end|>'];
  const types = new Float64Array(tokens.length).fill(1);
  types[tokens.length - 1] = 3;
  return {
    'tokenizer.ggml.model': 'gpt2',
    'tokenizer.ggml.pre': 'gpt2',
    'tokenizer.ggml.tokens': tokens,
    'tokenizer.ggml.token_type': types,
    'tokenizer.ggml.merges': merges,
    'tokenizer.ggml.eos_token_id': tokens.length - 1,
    ...extra,
  } as Metadata;
}

describe('byte-level BPE (gpt2)', () => {
  const t = new BytePairTokenizer(gpt2Metadata());
  const id = (piece: string) => (t as unknown as { ids: Map<string, number> }).ids.get(piece)!;

  test('merges by rank inside each pre-token', () => {
    // pre-tokens "hello", " the", " world". In "hello", 'h e' (rank 1) goes first, then 'l l'
    // (rank 3); 'e ll' and 'h ell' no longer apply, so "hello" never forms.
    expect(t.encode('hello the world')).toEqual([id('he'), id('ll'), id('o'), id('Ġthe'), id('Ġw'), id('o'), id('r'), id('l'), id('d')]);
  });

  test('no BOS unless the model asks for it; EOS ends generation', () => {
    expect(t.addBos).toBe(false);
    expect(t.isEndOfGeneration(t.vocabSize - 1)).toBe(true);
  });

  test('decode inverts encode for any text, including multi-byte characters', () => {
    for (const text of ['hello the world', 'Café naïve — “quoted” 日本語 🙂', '  spaces\tand\nnewlines  ', "it's 42!"]) {
      expect(t.decode(t.encode(text))).toBe(text);
    }
  });

  test('streaming holds back incomplete UTF-8 characters', () => {
    const tokens = t.encode('é🙂');
    const decoder = new StreamingDecoder(t);
    const pieces = tokens.map((tok) => decoder.push(tok));
    expect(pieces.join('') + decoder.flush()).toBe('é🙂');
    expect(pieces[0]).toBe(''); // the first byte of 'é' alone is not a character yet
  });

  test('unknown pre-tokenizers and tokenizer models are typed errors', () => {
    expect(() => new BytePairTokenizer(gpt2Metadata({ 'tokenizer.ggml.pre': 'martian' }))).toThrow(expect.objectContaining({ code: 'E_UNSUPPORTED' }));
    expect(() => new BytePairTokenizer(gpt2Metadata({ 'tokenizer.ggml.merges': 7 as unknown as string[] }))).toThrow(ChaiError);
  });
});

describe('SentencePiece edge cases', () => {
  const metadata: Metadata = {
    'tokenizer.ggml.model': 'llama',
    'tokenizer.ggml.tokens': ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`), '\u2581', 'a', 'b', '\u2581a', 'ab', '\u2581ab'],
    'tokenizer.ggml.scores': Float64Array.from({ length: 265 }, (_, i) => (i >= 262 ? i / 10 : 0)),
    'tokenizer.ggml.token_type': Float64Array.from({ length: 265 }, (_, i) => (i === 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : 1)),
    'tokenizer.ggml.bos_token_id': 1,
    'tokenizer.ggml.eos_token_id': 2,
  };
  const t = new SentencePieceTokenizer(metadata);

  test('higher-scored merges win and bytes fall back', () => {
    expect(t.encode('ab', { addBos: false })).toEqual([264]); // ▁ab
    expect(t.encode('ab', { addBos: true })).toEqual([1, 264]);
    // 'c' is not in the vocabulary: its UTF-8 byte 0x63 → <0x63>
    expect(t.encode('c', { addBos: false })).toEqual([259, 3 + 0x63]);
    expect(t.decode([1, 259, 3 + 0x63])).toBe('c');
  });

  test('empty text is BOS only; token ids out of range are typed errors', () => {
    expect(t.encode('')).toEqual([1]);
    expect(() => t.tokenBytes(999)).toThrow(expect.objectContaining({ code: 'E_INVALID_ARGUMENT' }));
  });
});
