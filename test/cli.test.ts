import { spawnSync } from 'node:child_process';
import path from 'node:path';

const cli = path.join(__dirname, '..', 'dist', 'cli.js');

describe('chai-attn info', () => {
  test('prints the devices and, without a GPU, why CUDA is unavailable', () => {
    const r = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^cpu: \d+ threads/m);
    expect(r.stdout).toMatch(/^cuda: (unavailable, .+|driver .+)$/m);
  });

  test('--json prints one parsable object', () => {
    const r = spawnSync(process.execPath, [cli, 'info', '--json'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    const info = JSON.parse(r.stdout) as { build: { backends: string[] }; devices: { cpu: { threads: number } } };
    expect(info.build.backends).toContain('cpu');
    expect(info.devices.cpu.threads).toBeGreaterThan(0);
  });
});
