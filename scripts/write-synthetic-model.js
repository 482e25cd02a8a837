#!/usr/bin/env node
// Writes the random-weight model that test_cuda_engine's synthetic section reads from
// $CHAI_SYNTHETIC_MODEL: llama, 2 layers, 4 heads of 64 (the tensor-core prefill's head size),
// 2 KV heads, F16 weights, 300 tokens; 2 MB. Needs npm run build (dist/) and the addon.
//   node scripts/write-synthetic-model.js OUT.gguf
// npm run test:gpu-sim writes one for its run; for scripts/gpu-check.sh on a lent GPU, write it to
// gpu-models/synthetic-hd64.gguf beside the other models (gpu-check sets the variable from there).
'use strict';
const path = require('node:path');

const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: node scripts/write-synthetic-model.js OUT.gguf\n');
  process.exit(2);
}
const { writeSyntheticLlama } = require(path.join(__dirname, '..', 'dist', 'synthetic.js'));
writeSyntheticLlama(out, { layers: 2, embeddingLength: 256, heads: 4, kvHeads: 2, feedForwardLength: 320, vocabSize: 300, weights: 'F16', seed: 11 });
