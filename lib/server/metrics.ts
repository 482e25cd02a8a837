import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Model } from '../model';
import type { Scheduler, SchedulerObserver } from './scheduler';

/** Seconds: from a fraction of a millisecond (small models) to tens of seconds (long queues). */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The server's Prometheus metrics, in a registry of its own (several servers can share a process).
 * Counts and timings come from the scheduler as they happen; queue, batch and KV pool figures are
 * read when /metrics is scraped.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly observer: SchedulerObserver;
  private readonly requests: Counter<'endpoint' | 'status'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'chai_process_' });
    this.requests = new Counter({
      name: 'chai_requests_total',
      help: "HTTP requests by endpoint and status code ('cancelled': the client went away first)",
      labelNames: ['endpoint', 'status'],
      registers,
    });
    const promptTokens = new Counter({ name: 'chai_prompt_tokens_total', help: 'Prompt tokens of admitted requests', registers });
    const generatedTokens = new Counter({ name: 'chai_generated_tokens_total', help: 'Tokens generated', registers });
    const cachedTokens = new Counter({ name: 'chai_prompt_cached_tokens_total', help: 'Prompt tokens of admitted requests read from the prefix cache instead of computed', registers });
    const firstToken = new Histogram({
      name: 'chai_time_to_first_token_seconds',
      help: 'Seconds from a request’s arrival to its first generated token (queueing and prefill included)',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const interToken = new Histogram({
      name: 'chai_inter_token_seconds',
      help: 'Seconds between two generated tokens of one request',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const batchSize = new Histogram({
      name: 'chai_batch_sequences',
      help: 'Sequences evaluated together in one forward pass',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.observer = {
      promptTokens: (n) => promptTokens.inc(n),
      generatedTokens: (n) => generatedTokens.inc(n),
      cachedTokens: (n) => cachedTokens.inc(n),
      firstToken: (s) => firstToken.observe(s),
      interToken: (s) => interToken.observe(s),
      step: (sequences) => batchSize.observe(sequences),
    };
  }

  /** Gauges read from the scheduler and the model's KV pool at each scrape. */
  watch(scheduler: Scheduler, model: Model): void {
    const registers = [this.registry];
    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };
    gauge('chai_queue_depth', 'Requests waiting for a place in the batch', () => scheduler.queueDepth);
    gauge('chai_running_sequences', 'Sequences in the running batch', () => scheduler.runningSequences);
    gauge('chai_kv_pages_used', 'KV cache pages held by sessions', () => model.kvPool.stats().pagesInUse);
    gauge('chai_kv_pages_free', 'KV cache pages free under the cap', () => model.kvPool.stats().pagesFree ?? 0);
    gauge('chai_kv_pages_reserved', 'KV cache pages set aside for the running sequences (admission)', () => scheduler.pagesReserved);
    gauge('chai_kv_page_bytes', 'Bytes of one KV cache page', () => model.kvPool.stats().pageBytes);
    gauge('chai_prefix_cache_pages', 'KV cache pages the prefix cache holds (counted in chai_kv_pages_used; those no sequence holds are evicted when room is needed)', () => model.prefixCache.stats().cachedPages);
    gauge('chai_prefix_cache_hit_rate', 'Share of the prompt tokens looked up in the prefix cache that were found there, since the model was loaded', () => model.prefixCache.stats().hitRate);
    gauge('chai_prefix_cache_evicted_pages', 'KV cache pages the prefix cache has given up to make room, since the model was loaded', () => model.prefixCache.stats().evictedPages);
    gauge('chai_kv_bytes_saved', 'KV cache bytes that CHAI saves over the running sequences (keys never stored)', () => scheduler.kvBytesSaved());
  }

  countRequest(endpoint: string, status: string): void {
    this.requests.inc({ endpoint, status });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
