/**
 * Metrics of a cluster (cluster/primary.ts): every worker keeps its own Registry; when the
 * primary is scraped it asks each connected worker over the cluster IPC channel for its
 * metrics as JSON and sums them with prom-client's AggregatorRegistry.aggregate (counters and
 * histograms summed, gauges summed: in-flight messages and open connections of all workers).
 *
 * Not AggregatorRegistry.clusterMetrics(): it answers from prom-client's global registry list,
 * and a worker that dies between request and reply fails the whole scrape after 5 s. Here a
 * worker that does not answer within WORKER_TIMEOUT_MS is left out of that scrape (its
 * counters come back with it, restarted from zero, which rate() treats as a counter reset).
 * The messages are objects with a `type`; the primary's WORKER_READY string is left alone.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';

const REQUEST = 'postseal:metrics-request';
const RESPONSE = 'postseal:metrics-response';
const WORKER_TIMEOUT_MS = 3000;

type WorkerMetrics = MetricObjectWithValues<MetricValue<string>>[];
interface Request {
  type: typeof REQUEST;
  id: number;
}
interface Response {
  type: typeof RESPONSE;
  id: number;
  metrics?: WorkerMetrics;
  error?: string;
}

/** In a worker: answers the primary's requests from this registry. Returns the remover. */
export function answerMetricsRequests(registry: Registry): () => void {
  const onMessage = (msg: unknown) => {
    if ((msg as Request | null)?.type !== REQUEST) return;
    const id = (msg as Request).id;
    registry.getMetricsAsJSON().then(
      (metrics) => process.send?.({ type: RESPONSE, id, metrics } satisfies Response),
      (err: Error) => process.send?.({ type: RESPONSE, id, error: err.message } satisfies Response),
    );
  };
  process.on('message', onMessage);
  return () => process.off('message', onMessage);
}

/** In the primary: the workers' metrics summed, in the Prometheus text format. */
export function createClusterSource(workers: () => Worker[] = () => Object.values(cluster.workers ?? {}).filter((w): w is Worker => !!w)) {
  let nextId = 0;
  return {
    contentType: AggregatorRegistry.PROMETHEUS_CONTENT_TYPE as string,
    async metrics(): Promise<string> {
      const id = nextId++;
      const answers = await Promise.all(
        workers()
          .filter((w) => w.isConnected())
          .map((w) => ask(w, id)),
      );
      return AggregatorRegistry.aggregate(answers.filter((a): a is WorkerMetrics => a !== undefined)).metrics();
    },
  };
}

function ask(worker: Worker, id: number): Promise<WorkerMetrics | undefined> {
  return new Promise((resolve) => {
    const finish = (metrics: WorkerMetrics | undefined) => {
      clearTimeout(timer);
      worker.off('message', onMessage);
      worker.off('exit', onExit);
      resolve(metrics);
    };
    const onMessage = (msg: unknown) => {
      const r = msg as Response | null;
      if (r?.type === RESPONSE && r.id === id) finish(r.metrics);
    };
    const onExit = () => finish(undefined);
    const timer = setTimeout(() => finish(undefined), WORKER_TIMEOUT_MS);
    worker.on('message', onMessage);
    worker.once('exit', onExit);
    try {
      worker.send({ type: REQUEST, id } satisfies Request);
    } catch {
      finish(undefined);
    }
  });
}
