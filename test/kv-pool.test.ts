// The model's KV pool as the API shows it: pages used and free under a cap set at load time.
import path from 'node:path';
import { ChaiError, loadModel } from '../lib';

const stories = path.join(__dirname, '..', '..', 'shared', 'models', 'stories260K.gguf');

describe('model.kvPool', () => {
  test('without a cap the pool reports pages in use and no total', async () => {
    const model = await loadModel(stories, { threads: 1 });
    const session = model.createSession();
    await session.evaluate([1, 2, 3]);
    // stories260K: 5 layers × 4 KV heads × (K + V), one 16-token page each; f32 rows of 8.
    expect(model.kvPool.stats()).toEqual({ pageTokens: 16, pageBytes: 16 * 8 * 4, pagesInUse: 40, pagesTotal: null, pagesFree: null });
    expect(model.kvPool.pagesFor(16)).toBe(40);
    expect(model.kvPool.pagesFor(17)).toBe(80);
    await session.dispose();
    expect(model.kvPool.stats().pagesInUse).toBe(0);
    model.dispose();
  });

  test('a capped pool refuses what passes the cap (E_DEVICE_OOM, session unchanged) and serves it once pages return', async () => {
    const model = await loadModel(stories, { threads: 1, kvCacheBytes: 60 * 512 + 100 });
    expect(model.kvPool.stats()).toMatchObject({ pagesTotal: 60, pagesFree: 60, pagesInUse: 0 });
    const first = model.createSession();
    await first.evaluate([1, 2, 3]);
    expect(model.kvPool.stats()).toMatchObject({ pagesInUse: 40, pagesFree: 20 });
    const second = model.createSession();
    await expect(second.evaluate([1, 2, 3])).rejects.toMatchObject({ code: 'E_DEVICE_OOM' });
    expect(second.tokens).toEqual([]);
    await first.dispose();
    await second.evaluate([1, 2, 3]);
    expect(model.kvPool.stats()).toMatchObject({ pagesInUse: 40, pagesFree: 20 });
    await second.dispose();
    model.dispose();
  });

  test('a cap below one page or not a byte count is E_INVALID_ARGUMENT', async () => {
    await expect(loadModel(stories, { kvCacheBytes: 100 })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
    await expect(loadModel(stories, { kvCacheBytes: -1 })).rejects.toBeInstanceOf(ChaiError);
    await expect(loadModel(stories, { kvCacheBytes: 1.5 })).rejects.toMatchObject({ code: 'E_INVALID_ARGUMENT' });
  });
});
