import { SingleBar } from 'cli-progress';
import { Command } from 'commander';
import { modelsCacheDir } from '../models/cache';
import { pullModel, PullProgress } from '../models/pull';
import { mib, number, withFlags } from './format';

/** API option → the flag of this command that sets it (for error messages). */
const FLAGS = { sha256: '--sha256', retries: '--retries', timeoutSeconds: '--timeout' };

interface PullFlags {
  sha256?: string;
  retries: number;
  timeout: number;
  json?: boolean;
}

/** A byte progress bar on stderr (none when stderr is not a terminal or with --json). */
function byteBar(quiet: boolean): { update: (p: PullProgress) => void; stop: () => void } {
  const bar = quiet || !process.stderr.isTTY ? null : new SingleBar({ format: 'pull [{bar}] {percentage}% {done} / {size} {speed}', stream: process.stderr, hideCursor: true });
  let started = false;
  let startTime = 0;
  let startBytes = 0;
  return {
    update(p) {
      if (!bar) return;
      const total = p.totalBytes ?? p.receivedBytes;
      if (!started) {
        started = true;
        startTime = Date.now();
        startBytes = p.receivedBytes;
        bar.start(total, p.receivedBytes, { done: mib(p.receivedBytes), size: mib(total), speed: '' });
      }
      const seconds = (Date.now() - startTime) / 1000;
      const speed = seconds > 0.5 ? `${mib((p.receivedBytes - startBytes) / seconds)}/s` : '';
      bar.setTotal(total);
      bar.update(p.receivedBytes, { done: mib(p.receivedBytes), size: p.totalBytes === null ? '?' : mib(total), speed });
    },
    stop() {
      if (started) bar?.stop();
    },
  };
}

async function pull(name: string, flags: PullFlags): Promise<void> {
  const bar = byteBar(Boolean(flags.json));
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const result = await pullModel(name, { sha256: flags.sha256, retries: flags.retries, timeoutSeconds: flags.timeout, onProgress: bar.update, signal: controller.signal });
    bar.stop();
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    } else {
      const how = result.cached ? 'already in the cache' : result.resumedFromBytes > 0 ? `downloaded (resumed at ${mib(result.resumedFromBytes)})` : 'downloaded';
      process.stdout.write(`${result.path}\n  ${how}, ${mib(result.bytes)}, sha256 ${result.sha256}\n  use it as --model ${name}\n`);
    }
  } finally {
    bar.stop();
    process.removeListener('SIGINT', onSigint);
  }
}

export function registerPullCommand(program: Command): void {
  program
    .command('pull')
    .description(`download a model into the models cache (${modelsCacheDir()}); then --model NAME loads it`)
    .argument('<name>', 'hf:owner/repo/path/file.gguf or an http(s) URL')
    .option('--sha256 <hex>', 'expected sha256 of the file (also checked: the server\'s x-linked-etag / x-linked-size)')
    .option('--retries <n>', 'resumes after a dropped connection before giving up', number('int'), 3)
    .option('--timeout <seconds>', 'give up when the server sends nothing for this long', number('float'), 30)
    .option('--json', 'print one JSON object (path, bytes, sha256, cached, resumedFromBytes)')
    .action((name: string, opts: PullFlags) => withFlags(FLAGS, () => pull(name, opts)));
}
