import { formatNumber, formatValue } from './format';

/** One line of a details list: a label and its text. */
export type Row = [label: string, value: string];

/**
 * The settings of a deployment config worth seeing at a glance, in a fixed
 * order. The config is the server's normalized one (`autoscale_config`,
 * `resources`, `run_test`, ...); sections this version of the panel does not
 * know (a batcher or a request logger, once the server has them) are still
 * listed, as `key=value` text, rather than hidden.
 */
export function summarizeConfig(config: { [key: string]: unknown }): Row[] {
  const rows: Row[] = [];
  const scale = asObject(config['autoscale_config']);
  if (scale) {
    const min = scale['min_replicas'];
    const max = scale['max_replicas'];
    if (min !== undefined || max !== undefined) {
      rows.push(['Replicas', `min ${formatValue(min)}, max ${formatValue(max)}`]);
    }
    const delay = scale['scale_to_zero_delay_seconds'];
    if (typeof delay === 'number') {
      rows.push(['Scale to zero', `after ${formatNumber(delay)} s idle`]);
    }
    const rest = without(scale, [
      'min_replicas',
      'max_replicas',
      'scale_to_zero_delay_seconds'
    ]);
    if (rest) {
      rows.push(['Autoscale', formatValue(rest)]);
    }
  }
  for (const [key, label] of [
    ['autoscale', 'Autoscale'],
    ['batcher', 'Batcher'],
    ['batching', 'Batching'],
    ['logger', 'Logger'],
    ['request_logger', 'Request logger']
  ] as const) {
    if (config[key] !== undefined && config[key] !== null) {
      rows.push([label, formatValue(config[key])]);
    }
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
    if (!SHOWN.has(key) && value !== null && value !== undefined && value !== '') {
      rows.push([key, formatValue(value)]);
    }
  }
  return rows;
}

/** The metrics object as rows, nested objects flattened one level. */
export function summarizeMetrics(
  metrics: { [key: string]: unknown } | null | undefined
): Row[] {
  if (!metrics) {
    return [];
  }
  const rows: Row[] = [];
  for (const [key, value] of Object.entries(metrics)) {
    const nested = asObject(value);
    if (nested) {
      for (const [inner, v] of Object.entries(nested)) {
        rows.push([`${humanize(key)} ${humanize(inner)}`, formatValue(v)]);
      }
    } else {
      rows.push([humanize(key), formatValue(value)]);
    }
  }
  return rows;
}

const SHOWN = new Set([
  'autoscale_config',
  'autoscale',
  'batcher',
  'batching',
  'logger',
  'request_logger',
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

function without(
  obj: Record<string, unknown>,
  keys: string[]
): Record<string, unknown> | null {
  const rest = Object.fromEntries(
    Object.entries(obj).filter(([k]) => !keys.includes(k))
  );
  return Object.keys(rest).length > 0 ? rest : null;
}

/** "request_count" -> "request count". */
function humanize(key: string): string {
  return key.replace(/_/g, ' ');
}
