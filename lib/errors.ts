const ERROR_CODES = [
  'E_INVALID_ARGUMENT',
  'E_MODEL_FORMAT',
  'E_PLAN_MISMATCH',
  'E_CONTEXT_OVERFLOW',
  'E_DEVICE_UNAVAILABLE',
  'E_DEVICE_OOM',
  'E_CUDA',
  'E_UNSUPPORTED',
  'E_SESSION_BUSY',
  'E_NON_FINITE',
  'E_NATIVE_LOAD',
  'E_MODEL_NOT_FOUND',
  'E_DOWNLOAD',
  'E_INTEGRITY',
  'E_INTERNAL',
] as const;

/** Stable error codes. Native code and TypeScript use the same strings. */
export type ErrorCode = (typeof ERROR_CODES)[number];

const KNOWN_CODES: ReadonlySet<string> = new Set<string>(ERROR_CODES);

/** Every error this package throws on purpose. `code` is stable; the message says what to do. */
export class ChaiError extends Error {
  readonly code: ErrorCode;
  /** The API option (or argument) the error is about, e.g. 'topP', so a CLI can name its own flag. */
  readonly option?: string;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; option?: string }) {
    super(message, options);
    this.name = 'ChaiError';
    this.code = code;
    if (options?.option !== undefined) this.option = options.option;
  }
}

/** An E_INVALID_ARGUMENT about one option: its message starts with the option's name. */
export function invalidOption(option: string, message: string): ChaiError {
  return new ChaiError('E_INVALID_ARGUMENT', `${option} ${message}`, { option });
}

/** An options argument: undefined gives {}, anything but a plain object is E_INVALID_ARGUMENT. */
export function optionsArgument<T extends object>(value: T | undefined, what: string): T {
  if (value === undefined) return {} as T;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ChaiError('E_INVALID_ARGUMENT', `${what} takes an options object, got ${value === null ? 'null' : typeof value}`);
  }
  return value;
}

/** Re-types an error thrown by the native addon (which carries a `code` string). */
export function fromNative(error: unknown): ChaiError {
  if (error instanceof ChaiError) return error;
  const e = error as { code?: unknown; message?: unknown };
  const code = typeof e?.code === 'string' && KNOWN_CODES.has(e.code) ? (e.code as ErrorCode) : 'E_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(error);
  return new ChaiError(code, message, { cause: error });
}

/** Runs a native call (sync or async) so that failures always surface as ChaiError. */
export async function callNative<T>(fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw fromNative(error);
  }
}

/** The synchronous twin of callNative. */
export function callNativeSync<T>(fn: () => T): T {
  try {
    return fn();
  } catch (error) {
    throw fromNative(error);
  }
}
