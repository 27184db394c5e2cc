import { formatNumber, formatValue } from './format';

/** One line of a details list: a label, its text, and a fuller tooltip if any. */
export type Row = [label: string, value: string, title?: string];

/**
 * The settings of a deployment config worth seeing at a glance, in a fixed
 * order, phrased for people. The config is the server's normalized one
 * (`autoscale_config`, `inference_batcher`, `inference_logger`, `transformer`,
 * `resources`, `run_test`, ...); a section this panel does not know yet is
 * still listed, as `key=value` text, rather than hidden.
 */
export function summarizeConfig(config: { [key: string]: unknown }): Row[] {
  const rows: Row[] = [];
  const scale = asObject(config['autoscale_config']);
  if (scale) {
    const min = scale['min_replicas'];
    const max = scale['max_replicas'];
    const replicas =
      min === max
        ? `${formatValue(min)} replica${min === 1 ? '' : 's'}`
        : `${formatValue(min)} to ${formatValue(max)} replicas`;
    const target = scale['target_in_flight_per_replica'];
    rows.push([
      'Autoscale',
      min === max || typeof target !== 'number'
        ? replicas
        : `${replicas}, ${formatNumber(target)} in flight each`,
      formatValue(scale, '\n')
    ]);
    const delay = scale['scale_to_zero_delay_seconds'];
    if (min === 0 && typeof delay === 'number') {
      rows.push(['Scale to zero', `after ${formatNumber(delay)} s idle`]);
    }
  }
  const batcher = asObject(config['inference_batcher']);
  if (batcher) {
    rows.push([
      'Batching',
      batcher['enabled']
        ? `up to ${formatValue(batcher['max_batch_size'])}, ` +
          `waits ${formatValue(batcher['max_latency_ms'])} ms`
        : 'off',
      formatValue(batcher, '\n')
    ]);
  }
  const logger = asObject(config['inference_logger']);
  if (logger) {
    rows.push([
      'Call log',
      LOG_MODES[String(logger['mode'])] ?? String(logger['mode']),
      formatValue(logger, '\n')
    ]);
  }
  const transformer = asObject(config['transformer']);
  if (transformer) {
    rows.push(['Transformer', transformer['enabled'] === false ? 'off' : 'on']);
  }
  const resources = asObject(config['resources']);
  if (resources && typeof resources['num_accelerators'] === 'number') {
    rows.push(['GPUs', formatNumber(resources['num_accelerators'])]);
  }
  if (config['run_test'] === false) {
    rows.push(['Test on start', 'off']);
  }
  if (typeof config['drain_seconds'] === 'number') {
    rows.push(['Drain', `${formatNumber(config['drain_seconds'])} s`]);
  }
  if (config['default'] === true) {
    rows.push(['Default', "the model's default deployment"]);
  }
  if (typeof config['description'] === 'string' && config['description']) {
    rows.push(['Description', config['description']]);
  }
  // Anything else but the fields shown elsewhere (worker = the model and
  // version) and secrets (their names are not for a shared screen).
  for (const [key, value] of Object.entries(config)) {
    if (
      !SHOWN.has(key) &&
      value !== null &&
      value !== undefined &&
      value !== ''
    ) {
      rows.push([key, formatValue(value, '\n')]);
    }
  }
  return rows;
}

const LOG_MODES: { [mode: string]: string } = {
  all: 'access, inputs and outputs',
  model_inputs: 'access and inputs',
  predictions: 'access and outputs',
  none: 'access only'
};

/**
 * The metrics the daemon reports (`Deployment.metrics()`), phrased; keys this
 * panel does not know are listed as they come.
 */
export function summarizeMetrics(
  metrics: { [key: string]: unknown } | null | undefined
): Row[] {
  if (!metrics) {
    return [];
  }
  const m = metrics;
  const rows: Row[] = [];
  const known = new Set(['deployment_id', 'state', ...METRIC_KEYS]);
  if (typeof m['requests'] === 'number') {
    rows.push([
      'Requests',
      `${formatNumber(m['requests'])} (${formatValue(m['errors'] ?? 0)} failed)`
    ]);
  }
  if (typeof m['requests_last_minute'] === 'number') {
    rows.push([
      'Last minute',
      `${formatNumber(m['requests_last_minute'])} ` +
        `(${formatValue(m['errors_last_minute'] ?? 0)} failed)`
    ]);
  }
  if (typeof m['p50_ms'] === 'number' && typeof m['p99_ms'] === 'number') {
    rows.push([
      'Latency',
      `p50 ${formatMs(m['p50_ms'])}, p99 ${formatMs(m['p99_ms'])}`,
      `over the latest ${formatValue(m['latency_sample'])} calls`
    ]);
  }
  if (typeof m['in_flight'] === 'number') {
    rows.push([
      'In flight',
      `${formatNumber(m['in_flight'])}, ${formatValue(m['queue_depth'] ?? 0)} queued`,
      `as ${formatValue(m['replicas_reporting'])} replica(s) report it`
    ]);
  }
  for (const [key, value] of Object.entries(m)) {
    if (!known.has(key)) {
      rows.push([humanize(key), formatValue(value)]);
    }
  }
  return rows;
}

const METRIC_KEYS = [
  'requests',
  'errors',
  'requests_last_minute',
  'errors_last_minute',
  'p50_ms',
  'p99_ms',
  'latency_sample',
  'in_flight',
  'queue_depth',
  'replicas_reporting',
  'ready_replicas'
];

function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(2)} ms` : `${ms.toFixed(0)} ms`;
}

const SHOWN = new Set([
  'autoscale_config',
  'inference_batcher',
  'inference_logger',
  'transformer',
  'resources',
  'run_test',
  'drain_seconds',
  'default',
  'description',
  'worker',
  'secrets',
  'id',
  'nodepools'
]);

function asObject(value: unknown): Record<string, unknown> | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : null;
}

/** "request_count" -> "request count". */
function humanize(key: string): string {
  return key.replace(/_/g, ' ');
}
