import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { invalidOption } from '../errors';
import type { Model } from '../model';
import { ChatFormat, chatFormatFor } from './chat-format';
import { Scheduler, SchedulerOptions } from './scheduler';

export interface ServeOptions extends Omit<SchedulerOptions, 'observer'> {
  /** Address to bind. Default 127.0.0.1 (this machine only). */
  host?: string;
  /** Port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Bearer token that /v1/* requests must carry. Default: none. */
  apiKey?: string;
  /** The model's id in the API. Default: the file name without `.gguf`. */
  modelId?: string;
  /** How chats become prompts. Default: chatFormatFor(model), the model's chat template when it has one. */
  chatFormat?: ChatFormat;
  /** Browser pages of this origin (scheme://host[:port]) or of any ('*') may call the API. Default: none (no CORS). */
  corsOrigin?: string;
}

export interface RunningServer {
  /** http://host:port */
  url: string;
  port: number;
  modelId: string;
  scheduler: Scheduler;
  app: FastifyInstance;
  /**
   * Stops accepting requests and connections, lets running and queued requests finish (after
   * graceMs, default: no limit, they are cancelled) and resolves once every connection is closed.
   */
  close(graceMs?: number): Promise<void>;
}

/** scheme://host[:port], exactly as a browser sends it in its Origin header. */
function isOrigin(value: string): boolean {
  try {
    return new URL(value).origin === value;
  } catch {
    return false;
  }
}

/** Binds the server; a port out of range, in use, or a host that does not resolve is E_INVALID_ARGUMENT naming the option. */
async function listen(app: FastifyInstance, host: string, port: number): Promise<void> {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidOption('port', `must be an integer in 0..65535 (0: any free port), got ${port}`);
  try {
    await app.listen({ host, port });
  } catch (error) {
    await app.close();
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw invalidOption('port', `${port} is in use on ${host}: stop what holds it or choose another port (0: any free one)`);
    if (code === 'EACCES') throw invalidOption('port', `${port} needs privileges on this machine: choose one above 1023`);
    throw invalidOption('host', `'${host}' cannot be bound (${(error as Error).message}): give an address of this machine, e.g. 127.0.0.1 or 0.0.0.0`);
  }
}

/** Serves `model` over the OpenAI API with continuous batching. The caller keeps owning the model. */
export async function serveModel(model: Model, options: ServeOptions = {}): Promise<RunningServer> {
  // Loaded here, not at the top: the HTTP stack costs about half a second to load, and only serving needs it.
  const [{ ServerMetrics }, { buildOpenAiApp }] = await Promise.all([import('./metrics'), import('./openai')]);
  const metrics = new ServerMetrics();
  const scheduler = new Scheduler(model, { ...options, observer: metrics.observer });
  metrics.watch(scheduler, model);
  const modelId = options.modelId ?? path.basename(model.path).replace(/\.gguf$/i, '');
  const corsOrigin = options.corsOrigin;
  if (corsOrigin !== undefined && corsOrigin !== '*' && !isOrigin(corsOrigin)) {
    throw invalidOption('corsOrigin', `must be '*' or an origin such as http://localhost:5173 (scheme, host and port only), got '${corsOrigin}'`);
  }
  const app = buildOpenAiApp(model, scheduler, metrics, { modelId, apiKey: options.apiKey, chatFormat: options.chatFormat ?? chatFormatFor(model), corsOrigin });
  const host = options.host ?? '127.0.0.1';
  await listen(app, host, options.port ?? 8080);
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 8080);
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    modelId,
    scheduler,
    app,
    close: (graceMs) => (closing ??= Promise.all([scheduler.close(graceMs), app.close()]).then(() => undefined)),
  };
}
