// --plan on generate, eval and bench (and serve): a plan file, 'off', or 'auto', the plan cached
// for the model file, calibrated (with a progress bar) when there is none yet.
import { autoPlan } from '../calibrate';
import { BUILTIN_CALIBRATION_TEXT } from '../calibration-text';
import type { Model } from '../model';
import { ClusterPlan } from '../plan';
import { cachedPlanPath } from '../plan-cache';
import { note, readText, withProgress } from './format';

export const PLAN_FLAG_HELP = "CHAI cluster plan: a plan file (JSON), 'auto' (the plan cached for this model file, calibrated on first use) or 'off'";
export const CALIBRATION_DATA_HELP = "text to calibrate on when 'auto' finds no cached plan (default: the package's built-in text)";

/**
 * The plan a --plan value names. 'auto' without a cached plan calibrates now (default budget) on
 * `calibrationData` or the built-in text, caches the plan, and says so on stderr (`quiet` hides
 * only the progress bar).
 */
export async function planFromFlag(model: Model, value: string, calibrationData: string | undefined, quiet: boolean): Promise<ClusterPlan | 'off'> {
  if (value === 'off') return 'off';
  if (value !== 'auto') return ClusterPlan.load(value);
  const cached = await autoPlan(model);
  if (cached) return cached;
  const text = calibrationData ? readText(calibrationData) : BUILTIN_CALIBRATION_TEXT;
  note(`no cluster plan cached for ${model.path}: calibrating on ${calibrationData ?? 'the built-in text'} (once; cached in ${cachedPlanPath(model.path)})`);
  const plan = await withProgress('calibrating', quiet, (tick) => autoPlan(model, { calibrate: true, text, onProgress: (p) => tick(p.done, p.total) }));
  return plan!;
}
