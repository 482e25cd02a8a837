import { ChaiError } from './errors';

/**
 * Cuts generated text at the first of some stop strings. Text that may still become a stop string
 * (the end of what came so far matches the beginning of one) is held back until it is clear, so
 * what is handed out never contains any part of a stop string.
 */
export class StopStrings {
  private readonly stops: readonly string[];
  private held = '';

  constructor(stops: readonly string[] | undefined) {
    if (stops !== undefined && (!Array.isArray(stops) || stops.some((stop) => typeof stop !== 'string'))) {
      throw new ChaiError('E_INVALID_ARGUMENT', 'stop must be an array of strings', { option: 'stop' });
    }
    this.stops = (stops ?? []).filter((stop) => stop.length > 0);
  }

  /** Adds generated text; returns the text to hand out now and whether a stop string ended it. */
  push(text: string): { text: string; stopped: boolean } {
    const fresh = this.held + text;
    let cut = -1;
    for (const stop of this.stops) {
      const at = fresh.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.held = '';
      return { text: fresh.slice(0, cut), stopped: true };
    }
    const keep = this.startOfStopAtEnd(fresh);
    this.held = fresh.slice(fresh.length - keep);
    return { text: fresh.slice(0, fresh.length - keep), stopped: false };
  }

  /** The text held back, once the generation ended without a stop string. */
  flush(): string {
    const held = this.held;
    this.held = '';
    return held;
  }

  /** The longest end of `text` that is the beginning of some stop string (it may still become one). */
  private startOfStopAtEnd(text: string): number {
    let longest = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n;
          break;
        }
      }
    }
    return longest;
  }
}
