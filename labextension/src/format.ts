/**
 * Turning server values into short text for a narrow sidebar. Pure
 * functions: no DOM, no state.
 */

/** "16 GiB" for a byte count. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${formatNumber(value)} ${units[unit]}`;
}

/** At most three decimals, no trailing zeros: 0.125, 12.5, 3. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) {
    return String(value);
  }
  return String(Math.round(value * 1000) / 1000);
}

/**
 * Any JSON value as short text: objects as `key=value` pairs joined by
 * `separator` (one line each with "\n"), nested objects inline.
 */
export function formatValue(value: unknown, separator = ', '): string {
  if (value === null || value === undefined) {
    return '—';
  }
  if (typeof value === 'number') {
    return formatNumber(value);
  }
  if (typeof value === 'boolean') {
    return value ? 'yes' : 'no';
  }
  if (Array.isArray(value)) {
    return value.map(v => formatValue(v)).join(', ');
  }
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(separator);
  }
  return String(value);
}

/** "4 CPU · 16 GiB · 1× NVIDIA H100" for a nodepool's instance type. */
export function formatInstance(
  instance: { [key: string]: unknown } | null
): string {
  if (!instance) {
    return '';
  }
  // Some backends nest the fields under `instance_type`, or name the type.
  const it = (
    typeof instance['instance_type'] === 'object' && instance['instance_type']
      ? instance['instance_type']
      : instance
  ) as Record<string, unknown>;
  const parts: string[] = [];
  if (typeof it['id'] === 'string' && it['id']) {
    parts.push(it['id']);
  }
  if (typeof it['cpus'] === 'number') {
    parts.push(`${formatNumber(it['cpus'])} CPU`);
  }
  if (typeof it['memory'] === 'number') {
    parts.push(formatBytes(it['memory']));
  }
  const gpus = it['accelerators'];
  if (typeof gpus === 'number' && gpus > 0) {
    const kind =
      typeof it['accelerator_type'] === 'string'
        ? it['accelerator_type']
        : 'GPU';
    parts.push(`${gpus}× ${kind || 'GPU'}`);
  }
  return parts.length > 0 ? parts.join(' · ') : formatValue(instance);
}

/**
 * A short local date and time, "Nov 23, 11:00" this year, for an ISO
 * timestamp or a number of seconds since the epoch.
 */
export function formatDate(
  value: string | number,
  now: Date = new Date()
): string {
  const date = new Date(typeof value === 'number' ? value * 1000 : value);
  if (value === '' || Number.isNaN(date.getTime())) {
    return String(value);
  }
  const thisYear = date.getFullYear() === now.getFullYear();
  return date.toLocaleString(undefined, {
    year: thisYear ? undefined : 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit',
    hour12: false
  });
}

/** "v3", or "" when the deployment has no version yet. */
export function formatVersion(
  versionNumber: number | null | undefined
): string {
  return typeof versionNumber === 'number' ? `v${versionNumber}` : '';
}

/** The first 8 characters of a long generated id (the whole id goes in a tooltip). */
export function shortId(id: string): string {
  return id.length > 12 ? `${id.slice(0, 8)}…` : id;
}
