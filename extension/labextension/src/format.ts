// Pure helpers (unit-tested with node's test runner: src/format.test.ts).

/** "850 ms", "12.3 s", "4 min 05 s", "2 h 03 min". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)} ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)} s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ${String(Math.floor(seconds % 60)).padStart(2, '0')} s`;
  }
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} min`;
}

/** A timestamp in the browser's time zone, e.g. "2026-12-07 06:00 (Europe/Paris)" style. */
export function formatTime(iso: string | null | undefined, timeZone?: string): string {
  if (!iso) {
    return '';
  }
  const date = new Date(iso);
  if (isNaN(date.getTime())) {
    return iso;
  }
  const text = date.toLocaleString('sv-SE', { timeZone, hour12: false });
  return text.slice(0, 16);
}

/** The schedule the form's fields describe, as the API takes it (null: no schedule). */
export function scheduleSpec(
  kind: string,
  value: string,
  timezone: string
): Record<string, unknown> | null {
  const text = value.trim();
  if (kind === 'none' || !text) {
    return null;
  }
  const spec: Record<string, unknown> = { kind, timezone: timezone.trim() || 'UTC' };
  if (kind === 'interval') {
    // Seconds as a number; "1h30m"-style text is read by the server.
    spec.interval = /^\d+(\.\d+)?$/.test(text) ? Number(text) : text;
  } else {
    spec[kind] = text;
  }
  return spec;
}

/**
 * The JSON value of a parameter's text field, read by the parameter's JSON type: a string
 * parameter takes the text as it is, others parse it as JSON (so `[1, 2]` is a list), and text
 * that is not JSON stays text (the server then names the expected type).
 */
export function parseValue(text: string, type: string | string[] | undefined): unknown {
  const types = Array.isArray(type) ? type : type ? [type] : [];
  if (types.length === 1 && types[0] === 'string') {
    return text;
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** How a value is shown in a text field: strings as they are, the rest as JSON. */
export function showValue(value: unknown): string {
  if (value === undefined) {
    return '';
  }
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** job_configuration keys a pool fixes: their value is not a `{{ variable }}` placeholder. */
export function pinnedKeys(configuration: Record<string, unknown> | undefined): string[] {
  return Object.entries(configuration ?? {})
    .filter(([, v]) => !(typeof v === 'string' && /^\{\{\s*[\w.-]+\s*\}\}$/.test(v)))
    .map(([k]) => k);
}

/** [the pool's base image, whether the pool pins it], as the server reads the pool's template
 * (nbflows.packaging.build.pool_base_image): a hard-coded `base_image` in the job configuration
 * pins it; else the `base_image` variable's default, if any. */
export function poolBaseImage(pool: { base_job_template?: Record<string, any> | null }): [string | null, boolean] {
  const template = pool.base_job_template ?? {};
  const configured = template.job_configuration?.base_image;
  if (typeof configured === 'string' && configured && !configured.includes('{{')) {
    return [configured, true];
  }
  const fallback = template.variables?.properties?.base_image?.default;
  return [typeof fallback === 'string' && fallback ? fallback : null, false];
}

/** A count field's value for the API: empty → null (no limit); digits → a number; anything
 * else is sent as typed, so that the server's validation says what is wrong. */
export function countValue(text: string): number | string | null {
  const value = text.trim();
  if (!value) {
    return null;
  }
  return /^-?\d+$/.test(value) ? Number(value) : value;
}
