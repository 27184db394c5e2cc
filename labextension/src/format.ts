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

/** Any JSON value in one line: objects as `key=value, ...`. */
export function formatValue(value: unknown): string {
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
    return value.map(formatValue).join(', ');
  }
  if (typeof value === 'object') {
    return Object.entries(value as Record<string, unknown>)
      .map(([k, v]) => `${k}=${formatValue(v)}`)
      .join(', ');
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
    const kind = typeof it['accelerator_type'] === 'string' ? it['accelerator_type'] : 'GPU';
    parts.push(`${gpus}× ${kind || 'GPU'}`);
  }
  return parts.length > 0 ? parts.join(' · ') : formatValue(instance);
}

/** A short local date and time for an ISO timestamp (or the text as given). */
export function formatDate(iso: string): string {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) {
    return iso;
  }
  return date.toLocaleString(undefined, {
    year: 'numeric',
    month: 'short',
    day: 'numeric',
    hour: '2-digit',
    minute: '2-digit'
  });
}
