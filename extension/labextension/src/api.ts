// The nbflows REST API (docs/api.md) through Jupyter's ServerConnection, so that the token and
// the XSRF cookie are those of the Lab page.
import { PageConfig, URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export const API_PATH = 'nbflows/api';

/** A refusal of the server: its `message` says what is wrong and what is valid. */
export class APIError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly reason: string
  ) {
    super(message);
  }
}

let settings: ServerConnection.ISettings | null = null;

function serverSettings(): ServerConnection.ISettings {
  if (settings === null) {
    settings = ServerConnection.makeSettings();
  }
  return settings;
}

/** Call `nbflows/api/<path>`; JSON in and out; a non-2xx answer raises APIError. */
export async function requestAPI<T>(
  path: string,
  init: { method?: string; body?: unknown; query?: Record<string, unknown> } = {}
): Promise<T> {
  const s = serverSettings();
  let url = URLExt.join(s.baseUrl, API_PATH, path);
  const query = Object.entries(init.query ?? {}).filter(
    ([, v]) => v !== undefined && v !== null && v !== ''
  );
  if (query.length) {
    url += URLExt.objectToQueryString(Object.fromEntries(query) as any);
  }
  const request: RequestInit = { method: init.method ?? 'GET' };
  if (init.body !== undefined) {
    request.body = JSON.stringify(init.body);
    request.headers = { 'Content-Type': 'application/json' };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, request, s);
  } catch (error) {
    throw new APIError(`the Jupyter server cannot be reached: ${error}`, 0, 'NetworkError');
  }
  const text = await response.text();
  let data: any = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!response.ok) {
    const message =
      (data && typeof data === 'object' && data.message) || `${response.status} ${response.statusText}`;
    throw new APIError(message, response.status, (data && data.reason) || String(response.status));
  }
  return data as T;
}

/** The dashboard's address (served by the extension). */
export function dashboardURL(): string {
  return URLExt.join(serverSettings().baseUrl, 'nbflows/');
}

export interface IWorkQueue {
  id: string;
  name: string;
  priority: number;
  concurrency_limit: number | null;
  paused: boolean;
}

export interface IWorkPool {
  id: string;
  name: string;
  type: string;
  description: string | null;
  base_job_template: { job_configuration?: Record<string, any>; variables?: any };
  concurrency_limit: number | null;
  paused: boolean;
  status: 'READY' | 'NOT_READY' | 'PAUSED';
  status_reason?: string | null;
  queues: IWorkQueue[];
  workers_online: number;
  running_runs: number;
}

export interface IWorker {
  name: string;
  status: 'ONLINE' | 'OFFLINE';
  running: number;
  last_heartbeat: string | null;
}

export interface ISchedule {
  id: string;
  kind: 'cron' | 'interval' | 'rrule';
  active: boolean;
  cron?: string;
  interval?: number;
  rrule?: string;
  timezone?: string;
}

export interface IDeployment {
  id: string;
  flow_name: string;
  name: string;
  full_name: string;
  kind: 'cell' | 'notebook';
  path: string;
  work_pool_name: string;
  work_queue_name: string;
  parameters: Record<string, unknown>;
  parameter_schema: IParameterSchema;
  job_variables: Record<string, unknown>;
  schedules: ISchedule[];
  paused: boolean;
  version: number;
}

export interface IState {
  type: string;
  name: string;
  message: string | null;
  timestamp: string | null;
}

export interface IFlowRun {
  id: string;
  name: string;
  flow_name: string;
  kind: 'deployment' | 'interactive';
  deployment_id: string | null;
  deployment_name: string | null;
  work_pool_name: string | null;
  state: IState;
  parameters: Record<string, unknown>;
  attempt: number;
  max_retries: number;
  expected_start_time: string | null;
  start_time: string | null;
  end_time: string | null;
  duration: number | null;
  created: string | null;
  has_notebook: boolean;
  log_count: number;
}

export interface ILogLine {
  id: number;
  timestamp: string | null;
  level: number;
  message: string;
  source: string;
}

export interface ILogsPage {
  items: ILogLine[];
  next_after: number;
  flow_run: IFlowRun;
}

export interface IParameterSchema {
  type: 'object';
  properties: Record<string, { type?: string | string[]; default?: unknown; description?: string }>;
  additionalProperties?: boolean;
}

export interface IDeployPreview {
  path: string;
  kind: 'cell' | 'notebook';
  flow_name: string;
  kernel_name: string | null;
  flows: { name: string; cell_index: number }[];
  parameter_schema: IParameterSchema;
  cells: { index: number; cell_type: string; source: string; tags: string[] }[];
}

export interface ISchedulePreview {
  schedules: { description: string; next_times: string[] }[];
}

/** States after which a run never changes again (except by an explicit retry): the server's
 * `nbflows.protocol.TERMINAL_VALUES`, which the nbflows server extension puts in the page config. */
export const TERMINAL_STATES = PageConfig.getOption('nbflowsTerminalStates').split(' ').filter(Boolean);

export function isTerminal(run: IFlowRun): boolean {
  return TERMINAL_STATES.includes(run.state.type);
}
