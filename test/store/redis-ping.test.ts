/**
 * store/redis.ts pingRedis: the PING behind CFG_STORE_NOT_ANSWERING and /readyz's store line
 * says why Redis does not answer, within the store's timeoutMs as a whole.
 */
import net from 'node:net';
import { pingRedis } from '../../src/store/redis';
import { startRedisServer } from '../helpers/redis-server';

describe('pingRedis', () => {
  it('answers null for a Redis that answers, and names a database it does not have', async () => {
    const redis = await startRedisServer();
    try {
      expect(await pingRedis(redis.url, 1000)).toBeNull();
      expect(await pingRedis(`redis://127.0.0.1:${redis.port}/99`, 1000)).toBe('ERR DB index is out of range');
    } finally {
      await redis.stop();
    }
  });

  it('gives up on a server that takes the connection and never answers after timeoutMs for the whole, not one per command', async () => {
    const taken: net.Socket[] = [];
    const silent = net.createServer((socket) => taken.push(socket));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const { port } = silent.address() as net.AddressInfo;
      expect(await pingRedis(`redis://127.0.0.1:${port}/0`, 300)).toBe('no answer within 300 ms');
    } finally {
      for (const socket of taken) socket.destroy();
      await new Promise((r) => silent.close(r));
    }
  });
});
