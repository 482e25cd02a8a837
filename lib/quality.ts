// CHAI against full attention on the same windows of text: the measurement that calibration
// optimises and that evaluation reports.
import { ChaiError, invalidOption } from './errors';
import type { Model } from './model';
import { ClusterPlan, PlanQuality } from './plan';
import type { Session } from './session';

/** Paragraph openings of `windowTokens` tokens (BOS first when the model uses one), `count` spread over the text. */
export function paragraphWindows(model: Model, text: string, windowTokens: number, count: number): number[][] {
  // Two tokens at least: a window scores the prediction of each token after the first.
  if (!Number.isInteger(windowTokens) || windowTokens < 2) throw invalidOption('windowTokens', `must be an integer >= 2, got ${String(windowTokens)}`);
  if (!Number.isInteger(count) || count < 1) throw invalidOption('windows', `must be an integer >= 1, got ${String(count)}`);
  const paragraphs = text.split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean);
  const candidates = paragraphs.map((p) => model.tokenizer.encode(p).slice(0, windowTokens)).filter((t) => t.length === windowTokens);
  if (candidates.length === 0) {
    throw new ChaiError('E_INVALID_ARGUMENT', `the text has no paragraph of ${windowTokens} tokens or more: lower windowTokens`, { option: 'windowTokens' });
  }
  if (candidates.length <= count) return candidates;
  return Array.from({ length: count }, (_, i) => candidates[Math.floor((i * candidates.length) / count)]);
}

// Indexed loops: iterators and Float64Array.from's callback cost 10x here on 150k-token vocabularies.
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i] - lse;
  return out;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}

/** Sums over scored positions, turned into a PlanQuality at the end. */
class Tally {
  nllFull = 0;
  nllChai = 0;
  kl = 0;
  agree = 0;
  scored = 0;
  kvFull = 0;
  kvChai = 0;

  quality(): PlanQuality {
    return {
      klMean: this.kl / this.scored,
      top1Agreement: this.agree / this.scored,
      perplexityFull: Math.exp(this.nllFull / this.scored),
      perplexityChai: Math.exp(this.nllChai / this.scored),
      bytesSavedFraction: 1 - this.kvChai / this.kvFull,
    };
  }
}

/** What measurePlans adds up besides the qualities: cache bytes per window and positions scored. */
export interface MeasuredBytes {
  tokens: number;
  kBytesFull: number;
  vBytesFull: number;
  kBytesChai: number;
  vBytesChai: number;
}

// All-position logits of a group of sessions are held at once; groups stay under this many bytes.
const LOGITS_BUDGET = 256 * 2 ** 20;

/**
 * The quality of each plan against full attention on the same windows: mean KL(full ‖ CHAI),
 * top-1 agreement, perplexities and K+V bytes saved (from the sessions' caches). Full attention
 * runs once per window; the plans' sessions of a window are evaluated together (one batched
 * forward pass). `onProgress` counts windows × plans.
 */
export async function measurePlans(
  model: Model,
  windows: readonly number[][],
  plans: readonly ClusterPlan[],
  onProgress?: (done: number, total: number) => void,
): Promise<{ qualities: PlanQuality[]; bytes: MeasuredBytes[] }> {
  const vocab = model.info.vocabSize;
  const windowTokens = Math.max(...windows.map((w) => w.length));
  const groupSize = Math.max(1, Math.floor(LOGITS_BUDGET / (windowTokens * vocab * 4)));
  const tallies = plans.map(() => new Tally());
  const bytes = plans.map(() => ({ tokens: 0, kBytesFull: 0, vBytesFull: 0, kBytesChai: 0, vBytesChai: 0 }));
  const full = model.createSession({ maxTokens: windowTokens, chai: 'off' });
  const sessions: Session[] = [];
  let done = 0;
  const total = windows.length * plans.length;
  try {
    for (const plan of plans) sessions.push(model.createSession({ maxTokens: windowTokens, chai: plan }));
    for (const tokens of windows) {
      await full.reset();
      const reference = await full.evaluate(tokens, { allLogits: true });
      const fullStats = full.cache.stats();
      const rows = tokens.length - 1;
      const fullLog = Array.from({ length: rows }, (_, i) => logSoftmax(reference.subarray(i * vocab, (i + 1) * vocab)));
      const fullProb = fullLog.map((row) => row.map(Math.exp));
      const fullTop = fullLog.map(argmax);
      for (let g = 0; g < plans.length; g += groupSize) {
        const group = sessions.slice(g, g + groupSize);
        const outputs = await Promise.all(group.map((s) => s.evaluate(tokens, { allLogits: true })));
        outputs.forEach((logits, j) => {
          const p = g + j;
          const t = tallies[p];
          for (let i = 0; i < rows; i++) {
            const la = fullLog[i];
            const pa = fullProb[i];
            const lb = logSoftmax(logits.subarray(i * vocab, (i + 1) * vocab));
            t.nllFull -= la[tokens[i + 1]];
            t.nllChai -= lb[tokens[i + 1]];
            let kl = 0;
            for (let v = 0; v < vocab; v++) kl += pa[v] * (la[v] - lb[v]);
            t.kl += kl;
            if (argmax(lb) === fullTop[i]) t.agree++;
            t.scored++;
          }
          const s = group[j].cache.stats();
          t.kvFull += fullStats.kBytes + fullStats.vBytes;
          t.kvChai += s.kBytes + s.vBytes;
          const b = bytes[p];
          b.tokens += rows;
          b.kBytesFull += fullStats.kBytes / windows.length;
          b.vBytesFull += fullStats.vBytes / windows.length;
          b.kBytesChai += s.kBytes / windows.length;
          b.vBytesChai += s.vBytes / windows.length;
          onProgress?.(++done, total);
        });
        // Free the group's cache pages before the next group takes its own.
        await Promise.all(group.map((s) => s.reset()));
      }
    }
    return { qualities: tallies.map((t) => t.quality()), bytes };
  } finally {
    await full.dispose();
    await Promise.all(sessions.map((s) => s.dispose()));
  }
}
