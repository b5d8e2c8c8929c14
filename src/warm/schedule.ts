import { schedule } from 'node-cron';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';
import { parsePlatform, warmImages } from './warm.ts';

/**
 * The cron warm list (proxy.warm): at each tick, the chosen images are pulled through this
 * mirror's own address, so their tags are checked upstream and new content is cached before
 * the first client asks. A run still going when the next tick comes makes that tick skip.
 * Returns a function that stops the schedule.
 */
export function scheduleWarm(warm: NonNullable<Config['proxy']['warm']>, mirrorUrl: string, logger: Logger): () => void {
  const platforms = warm.platforms?.map(parsePlatform);
  const credentials = warm.username !== undefined && warm.password !== undefined ? { username: warm.username, password: warm.password } : undefined;
  const task = schedule(
    warm.schedule,
    async () => {
      const summary = await warmImages(warm.images, { mirror: mirrorUrl, platforms, concurrency: warm.concurrency, credentials });
      for (const image of summary.images.filter((i) => !i.ok)) logger.warn('scheduled warm failed', { image: image.ref, error: image.error });
      logger.info('scheduled warm done', {
        images: summary.images.length,
        failed: summary.failed,
        blobs: summary.blobs,
        fetchedBytes: summary.fetchedBytes,
        cachedBytes: summary.cachedBytes,
        ms: summary.ms,
      });
    },
    { name: 'pullmirror-warm', noOverlap: true },
  );
  task.on('execution:failed', (context) => {
    logger.error('scheduled warm crashed', { error: context.execution?.error?.message });
  });
  logger.info('warm schedule set', { schedule: warm.schedule, images: warm.images.length });
  return () => void task.stop();
}
