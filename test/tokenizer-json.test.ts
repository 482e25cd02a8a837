// tokenizer.json -> GGUF tokenizer metadata: the byte-level BPE path on Llama 3's and Qwen's real
// vocabularies (tokenizations checked against llama.cpp's), and the typed errors of what is not
// understood.
// The SentencePiece path is checked end to end in hf-folder.test.ts.
import fs from 'node:fs';
import path from 'node:path';
import { TokenType, tokenizerFromMetadata } from '../lib/tokenizer';
import { metadataFromTokenizerJson } from '../lib/tokenizer-json';
import { byteLevelTokenizerJson, readGgufMetadata } from './hf-folder';

const SHARED = path.join(__dirname, '..', '..', 'shared');

describe("Llama 3's tokenizer.json", () => {
  const gguf = readGgufMetadata(path.join(SHARED, 'models', 'synth-llama3.gguf'));
  // Through JSON text and back, as a file on disk would go.
  const json = JSON.parse(JSON.stringify(byteLevelTokenizerJson(gguf)));
  const metadata = metadataFromTokenizerJson(json, { config: { bos_token_id: 128000, eos_token_id: [128001, 128008, 128009] }, tokenizerConfig: { eos_token: '<|eot_id|>' } });

  test('becomes the GGUF metadata llama.cpp converted it to', () => {
    expect(metadata['tokenizer.ggml.model']).toBe('gpt2');
    expect(metadata['tokenizer.ggml.pre']).toBe('llama-bpe');
    expect(metadata['tokenizer.ggml.tokens']).toEqual(gguf['tokenizer.ggml.tokens']);
    expect(Array.from(metadata['tokenizer.ggml.token_type'] as Float64Array)).toEqual(Array.from(gguf['tokenizer.ggml.token_type'] as Float64Array));
    expect(metadata['tokenizer.ggml.merges']).toEqual(gguf['tokenizer.ggml.merges']);
    expect(metadata['tokenizer.ggml.bos_token_id']).toBe(128000);
    expect(metadata['tokenizer.ggml.eos_token_id']).toBe(128009); // tokenizer_config's text wins over config.json's list
    expect(metadata['tokenizer.ggml.add_bos_token']).toBe(true); // from the post-processor template
  });

  test('tokenizes every case exactly as llama.cpp does', () => {
    const tokenizer = tokenizerFromMetadata(metadata);
    const golden = JSON.parse(fs.readFileSync(path.join(SHARED, 'golden', 'tokenize-synth-llama3.json'), 'utf8')) as { cases: { text: string; tokens: number[] }[] };
    expect(golden.cases.length).toBeGreaterThan(10);
    for (const c of golden.cases) expect(tokenizer.encode(c.text, { addBos: false })).toEqual(c.tokens);
    expect(tokenizer.encode('Hi')[0]).toBe(128000);
  });
});

describe("Qwen's tokenizer.json", () => {
  const gguf = readGgufMetadata(path.join(SHARED, 'models', 'synth-qwen2.gguf'));
  const json = JSON.parse(JSON.stringify(byteLevelTokenizerJson(gguf)));
  const metadata = metadataFromTokenizerJson(json, { vocabSize: 151936, config: { bos_token_id: 151643, eos_token_id: 151645 }, tokenizerConfig: { add_bos_token: false, bos_token: null, eos_token: '<|im_end|>' } });

  test("becomes the GGUF metadata llama.cpp converted it to: the 'qwen2' pre-tokenizer, control and user-defined tokens, padding", () => {
    expect(json.normalizer).toEqual({ type: 'NFC' }); // as Qwen ships it; llama.cpp drops it
    expect(metadata['tokenizer.ggml.model']).toBe('gpt2');
    expect(metadata['tokenizer.ggml.pre']).toBe('qwen2');
    expect(metadata['tokenizer.ggml.tokens']).toEqual(gguf['tokenizer.ggml.tokens']);
    expect(Array.from(metadata['tokenizer.ggml.token_type'] as Float64Array)).toEqual(Array.from(gguf['tokenizer.ggml.token_type'] as Float64Array));
    expect(metadata['tokenizer.ggml.merges']).toEqual(gguf['tokenizer.ggml.merges']);
    for (const key of ['tokenizer.ggml.bos_token_id', 'tokenizer.ggml.eos_token_id', 'tokenizer.ggml.add_bos_token']) expect(metadata[key]).toEqual(gguf[key]);
  });
});

describe('tokenizer.json details', () => {
  const spm = {
    model: { type: 'BPE', byte_fallback: true, unk_token: '<unk>', vocab: { '<unk>': 0, '<s>': 1, '</s>': 2, '<0x41>': 3, a: 4, b: 5, ab: 6, '\u2581': 7 }, merges: ['a b'] },
    added_tokens: [
      { id: 0, content: '<unk>', special: true },
      { id: 1, content: '<s>', special: true },
      { id: 2, content: '</s>', special: true },
      { id: 9, content: '<tool>', special: false },
    ],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
  };

  test('token types, padding up to config.json vocab_size, scores from merge ranks, the chat template', () => {
    const m = metadataFromTokenizerJson(spm, { vocabSize: 12, tokenizerConfig: { bos_token: '<s>', eos_token: { content: '</s>' }, add_bos_token: false, chat_template: [{ name: 'default', template: '{{ x }}' }] } });
    expect(m['tokenizer.ggml.model']).toBe('llama');
    const tokens = m['tokenizer.ggml.tokens'] as string[];
    expect(tokens).toHaveLength(12);
    expect(tokens[8]).toBe('[PAD8]');
    expect(Array.from(m['tokenizer.ggml.token_type'] as Float64Array)).toEqual([
      TokenType.Unknown, TokenType.Control, TokenType.Control, TokenType.Byte, TokenType.Normal, TokenType.Normal, TokenType.Normal, TokenType.Normal,
      TokenType.Unused, TokenType.UserDefined, TokenType.Unused, TokenType.Unused,
    ]);
    const scores = m['tokenizer.ggml.scores'] as Float64Array;
    expect(scores[6]).toBe(-0); // 'ab' is made by merge 0
    expect(scores[4]).toBeLessThan(scores[6]);
    expect(m['tokenizer.ggml.add_space_prefix']).toBe(true);
    expect(m['tokenizer.ggml.bos_token_id']).toBe(1);
    expect(m['tokenizer.ggml.eos_token_id']).toBe(2);
    expect(m['tokenizer.ggml.add_bos_token']).toBe(false);
    expect(m['tokenizer.chat_template']).toBe('{{ x }}');
    expect(tokenizerFromMetadata(m).encode('ab')).toEqual([7, 6]);
  });

  test.each([
    ['a Unigram model', { model: { type: 'Unigram', vocab: [] } }, 'E_UNSUPPORTED', /Unigram/],
    ['no model', {}, 'E_MODEL_FORMAT', /model/],
    ['no vocabulary', { model: { type: 'BPE' } }, 'E_MODEL_FORMAT', /vocab/],
    ['an unknown split pattern', { model: { type: 'BPE', vocab: { a: 0 } }, pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: '\\w+' } }, { type: 'ByteLevel' }] } }, 'E_UNSUPPORTED', /pattern/],
    ['a byte-level tokenizer with a normalizer other than NFC', { model: { type: 'BPE', vocab: { a: 0 } }, normalizer: { type: 'Sequence', normalizers: [{ type: 'NFC' }, { type: 'Lowercase' }] }, pre_tokenizer: { type: 'ByteLevel' } }, 'E_UNSUPPORTED', /Lowercase/],
    ['neither SentencePiece nor byte-level', { model: { type: 'BPE', vocab: { a: 0 } }, pre_tokenizer: { type: 'Whitespace' } }, 'E_UNSUPPORTED', /byte-level/],
  ])('%s is a typed error', (_name, json, code, message) => {
    expect(() => metadataFromTokenizerJson(json as never)).toThrow(expect.objectContaining({ code, message: expect.stringMatching(message) }));
  });

  test('token ids past config.json vocab_size are E_MODEL_FORMAT', () => {
    expect(() => metadataFromTokenizerJson(spm, { vocabSize: 8 })).toThrow(expect.objectContaining({ code: 'E_MODEL_FORMAT', message: expect.stringMatching(/past config.json's vocab_size of 8/) }));
  });
});
