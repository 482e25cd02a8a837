// The chart a person checks a calibration with: K+V bytes saved against KL and against top-1
// agreement, for every uniform-k plan and every plan the budget search picked, the chosen one marked.
import { ChaiError } from './errors';
import type { ClusterPlan, MeasuredPlan, PlanQuality } from './plan';

const PANEL_W = 420;
const PANEL_H = 300;
const MARGIN = { left: 64, right: 16, top: 48, bottom: 52 };
/** On a log axis, the bottom band of the plot where 0 sits, below the lowest decade. */
const ZERO_BAND = 18;
/** Width of a character of the labels, in ems: enough to keep a label inside its panel. */
const CHAR_EM = 0.6;

function niceStep(span: number, ticks: number): number {
  const raw = span / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const mult = [1, 2, 2.5, 5, 10].find((m) => m * power >= raw)!;
  return mult * power;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

interface Series {
  label: string;
  points: { x: number; y: number; label: string }[];
  shape: 'circle' | 'square';
  color: string;
  line: boolean;
}

interface Panel {
  title: string;
  yLabel: string;
  y: (q: PlanQuality) => number;
  yFormat: (v: number) => string;
  /** A horizontal budget line, when the budget is on this axis. */
  limit?: { value: number; label: string };
  /** A log scale from the power of ten below the smallest positive value; 0 sits on the axis floor, marked 0, below it. */
  log?: boolean;
}

function panelSvg(ox: number, panel: Panel, series: Series[], chosen: { x: number; y: number }): string {
  const xs = series.flatMap((s) => s.points.map((p) => p.x)).concat(chosen.x, 0);
  const ys = series.flatMap((s) => s.points.map((p) => p.y)).concat(chosen.y, panel.limit ? [panel.limit.value] : []);
  const xMax = Math.max(...xs) * 1.05 || 1;
  const positive = ys.filter((v) => v > 0);
  const log = Boolean(panel.log) && positive.length > 0;
  const yMin = log ? 10 ** Math.floor(Math.log10(Math.min(...positive))) : Math.min(0, ...ys);
  const yMax = log ? 10 ** Math.ceil(Math.log10(Math.max(...positive))) : Math.max(...ys) * 1.05 || 1;
  const plotW = PANEL_W - MARGIN.left - MARGIN.right;
  const plotH = PANEL_H - MARGIN.top - MARGIN.bottom;
  const X = (v: number): number => ox + MARGIN.left + (v / xMax) * plotW;
  const decadesH = plotH - ZERO_BAND;
  const Y = (v: number): number =>
    log
      ? MARGIN.top + plotH - (v <= 0 ? 0 : ZERO_BAND + (Math.log10(v / yMin) / Math.log10(yMax / yMin)) * decadesH)
      : MARGIN.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH;
  const right = ox + PANEL_W - MARGIN.right;
  /** A label beside a point: to its right, or to its left where it would pass the panel's edge. */
  const label = (x: number, y: number, text: string, fontSize: number, attributes: string): string => {
    const fits = x + 6 + text.length * fontSize * CHAR_EM <= right;
    return `<text x="${(fits ? x + 6 : x - 6).toFixed(1)}" y="${y.toFixed(1)}" font-size="${fontSize}"${fits ? '' : ' text-anchor="end"'} ${attributes}>${escapeXml(text)}</text>`;
  };
  const out: string[] = [];
  out.push(`<text x="${ox + MARGIN.left}" y="${MARGIN.top - 22}" font-size="13" font-weight="bold">${escapeXml(panel.title)}</text>`);
  out.push(`<rect x="${ox + MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  const xStep = niceStep(xMax, 5);
  for (let v = 0; v <= xMax + 1e-12; v += xStep) {
    out.push(`<line x1="${X(v).toFixed(1)}" y1="${MARGIN.top}" x2="${X(v).toFixed(1)}" y2="${MARGIN.top + plotH}" stroke="#eee"/>`);
    out.push(`<text x="${X(v).toFixed(1)}" y="${MARGIN.top + plotH + 16}" font-size="10" text-anchor="middle">${(100 * v).toFixed(xStep < 0.01 ? 1 : 0)}%</text>`);
  }
  const yStep = niceStep(yMax - yMin, 5);
  const yTicks: number[] = [];
  if (log) for (let v = yMin; v <= yMax * 1.0001; v *= 10) yTicks.push(v);
  if (log) yTicks.unshift(0);
  else for (let v = Math.ceil(yMin / yStep) * yStep; v <= yMax + 1e-12; v += yStep) yTicks.push(v);
  for (const v of yTicks) {
    out.push(`<line x1="${ox + MARGIN.left}" y1="${Y(v).toFixed(1)}" x2="${ox + MARGIN.left + plotW}" y2="${Y(v).toFixed(1)}" stroke="#eee"/>`);
    out.push(`<text x="${ox + MARGIN.left - 6}" y="${(Y(v) + 3).toFixed(1)}" font-size="10" text-anchor="end">${v === 0 ? '0' : panel.yFormat(v)}</text>`);
  }
  out.push(`<text x="${ox + MARGIN.left + plotW / 2}" y="${PANEL_H - 12}" font-size="11" text-anchor="middle">K+V cache bytes saved (% of full attention)</text>`);
  out.push(
    `<text transform="translate(${ox + 14},${MARGIN.top + plotH / 2}) rotate(-90)" font-size="11" text-anchor="middle">${escapeXml(panel.yLabel)}</text>`,
  );
  if (panel.limit) {
    const y = Y(panel.limit.value).toFixed(1);
    out.push(`<line x1="${ox + MARGIN.left}" y1="${y}" x2="${ox + MARGIN.left + plotW}" y2="${y}" stroke="#d62728" stroke-dasharray="5,4"/>`);
    out.push(`<text x="${ox + MARGIN.left + plotW - 4}" y="${(Number(y) - 4).toFixed(1)}" font-size="10" fill="#d62728" text-anchor="end">${escapeXml(panel.limit.label)}</text>`);
  }
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    if (s.line && pts.length > 1) {
      out.push(`<polyline points="${pts.map((p) => `${X(p.x).toFixed(1)},${Y(p.y).toFixed(1)}`).join(' ')}" fill="none" stroke="${s.color}" stroke-width="1.2"/>`);
    }
    for (const p of pts) {
      const cx = X(p.x).toFixed(1);
      const cy = Y(p.y).toFixed(1);
      out.push(
        s.shape === 'circle'
          ? `<circle cx="${cx}" cy="${cy}" r="3.5" fill="${s.color}"><title>${escapeXml(p.label)}</title></circle>`
          : `<rect x="${(Number(cx) - 3.5).toFixed(1)}" y="${(Number(cy) - 3.5).toFixed(1)}" width="7" height="7" fill="${s.color}"><title>${escapeXml(p.label)}</title></rect>`,
      );
      if (s.shape === 'circle') out.push(label(Number(cx), Number(cy) - 5, p.label, 9, `fill="${s.color}"`));
    }
  }
  const cx = X(chosen.x).toFixed(1);
  const cy = Y(chosen.y).toFixed(1);
  out.push(`<circle cx="${cx}" cy="${cy}" r="8" fill="none" stroke="#d62728" stroke-width="2"/>`);
  out.push(label(Number(cx) + 4, Number(cy) + 14, 'chosen', 10, 'fill="#d62728" font-weight="bold"'));
  return out.join('');
}

/**
 * An SVG of a calibrated plan's record: K+V bytes saved (x) against mean KL(full ‖ CHAI) (left)
 * and top-1 agreement (right), for every uniform-k plan (blue, labelled k) and the plans the
 * budget search picked (orange), the chosen plan circled in red and the budget drawn dashed.
 */
export function calibrationChartSvg(plan: ClusterPlan): string {
  const cal = plan.calibration;
  if (!cal) throw new ChaiError('E_INVALID_ARGUMENT', 'this plan has no calibration record to chart (it was not made by calibrate())');
  const heads = plan.toJSON().model.heads;
  const m = cal.measured;
  const fullPoint = { clusters: new Array<number>(plan.clusters.length).fill(heads), klMean: 0, top1Agreement: 1, bytesSavedFraction: 0, perplexityFull: m.perplexityFull, perplexityChai: m.perplexityFull };
  const uniform = cal.candidates.filter((c) => c.kind === 'uniform');
  const budgeted = cal.candidates.filter((c) => c.kind === 'budgeted');
  const build = (y: (q: PlanQuality) => number): Series[] => [
    {
      label: 'every layer at k clusters',
      points: [fullPoint, ...uniform].map((c) => ({ x: c.bytesSavedFraction, y: y(c), label: `k=${c.clusters[c.clusters.length - 1]}` })),
      shape: 'circle',
      color: '#1f77b4',
      line: true,
    },
    {
      label: 'budget search',
      points: budgeted.map((c: MeasuredPlan) => ({ x: c.bytesSavedFraction, y: y(c), label: `budget ${c.budget?.toPrecision(3)}: ${c.clusters.join(' ')}` })),
      shape: 'square',
      color: '#ff7f0e',
      line: false,
    },
  ];
  const kl: Panel = {
    title: 'KL divergence from full attention',
    yLabel: 'mean KL(full ‖ CHAI), nats per token (log)',
    y: (q) => q.klMean,
    yFormat: (v) => String(+v.toPrecision(1)),
    log: true,
    ...(cal.budget.maxKl !== undefined ? { limit: { value: cal.budget.maxKl, label: `budget: KL ≤ ${cal.budget.maxKl}` } } : {}),
  };
  const top1: Panel = {
    title: 'Top-1 agreement with full attention',
    yLabel: 'top-1 agreement (%)',
    y: (q) => q.top1Agreement,
    yFormat: (v) => `${(100 * v).toFixed(0)}%`,
    ...(cal.budget.minTop1 !== undefined ? { limit: { value: cal.budget.minTop1, label: `budget: top-1 ≥ ${cal.budget.minTop1}` } } : {}),
  };
  const width = 2 * PANEL_W;
  const height = PANEL_H + 84;
  const budget = Object.entries(cal.budget).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  const title = `CHAI calibration (${cal.rule === 'elbow' ? 'elbow rule' : `${cal.rule}, budget ${budget}`}): chosen ${plan.clusters.join(' ')} saves ${(100 * m.bytesSavedFraction).toFixed(1)}% at KL ${m.klMean.toFixed(4)}, top-1 ${(100 * m.top1Agreement).toFixed(1)}%`;
  // The key names only what this chart draws: orange points exist for the budget rule alone.
  const key = [
    `Blue: every layer at k clusters (k=${heads} of ${heads}: full attention, KL 0 on the axis floor)`,
    ...(budgeted.length > 0 ? ['orange: the budget search at other budgets'] : []),
    `red ring: the plan chosen by ${cal.rule === 'elbow' ? "the elbow rule (each layer's inertia knee)" : 'the budget'}`,
  ];
  const notes = [
    `Measured on ${cal.windows} windows of ${cal.windowTokens} tokens of the calibration text (sha256 ${cal.textSha256.slice(0, 12)}…).`,
    `${key.join('; ')}.`,
  ];
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">` +
    `<rect width="100%" height="100%" fill="white"/>` +
    `<text x="10" y="20" font-size="13">${escapeXml(title)}</text>` +
    `<g transform="translate(0,20)">${panelSvg(0, kl, build(kl.y), { x: m.bytesSavedFraction, y: m.klMean })}${panelSvg(PANEL_W, top1, build(top1.y), { x: m.bytesSavedFraction, y: m.top1Agreement })}</g>` +
    notes.map((n, i) => `<text x="10" y="${height - 24 + 14 * i}" font-size="10" fill="#555">${escapeXml(n)}</text>`).join('') +
    `</svg>\n`
  );
}
