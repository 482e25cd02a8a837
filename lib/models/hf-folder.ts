// The TypeScript half of Hugging Face folders: the tokenizer (tokenizer.json, with the special
// tokens of config.json / tokenizer_config.json). The weights and config.json's hyperparameters
// are read natively (native/model/safetensors.cpp).
import fs from 'node:fs';
import path from 'node:path';
import { ChaiError } from '../errors';
import { Metadata } from '../tokenizer';
import { metadataFromTokenizerJson } from '../tokenizer-json';

function readJson(file: string, required: boolean): Record<string, unknown> | undefined {
  if (!fs.existsSync(file)) {
    if (!required) return undefined;
    throw new ChaiError('E_MODEL_FORMAT', `Hugging Face folder: ${path.dirname(file)} has no ${path.basename(file)}`);
  }
  try {
    const value = JSON.parse(fs.readFileSync(file, 'utf8')) as unknown;
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch (error) {
    throw new ChaiError('E_MODEL_FORMAT', `Hugging Face folder: ${file} is not valid JSON (${(error as Error).message})`, { cause: error });
  }
  throw new ChaiError('E_MODEL_FORMAT', `Hugging Face folder: ${file} must hold a JSON object`);
}

/** Whether `modelPath` is a folder (a Hugging Face checkpoint) rather than a GGUF file. */
export function isModelFolder(modelPath: string): boolean {
  return fs.statSync(modelPath, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** GGUF-style tokenizer metadata for a Hugging Face folder (see tokenizer-json.ts). */
export function folderTokenizerMetadata(folder: string): Metadata {
  const config = readJson(path.join(folder, 'config.json'), true)!;
  const tokenizer = readJson(path.join(folder, 'tokenizer.json'), true)!;
  const tokenizerConfig = readJson(path.join(folder, 'tokenizer_config.json'), false);
  const vocabSize = typeof config.vocab_size === 'number' ? config.vocab_size : undefined;
  return metadataFromTokenizerJson(tokenizer, { vocabSize, config, tokenizerConfig });
}
