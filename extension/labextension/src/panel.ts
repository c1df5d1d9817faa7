// The "Flows" side panel: work pools, deployments and flow runs, kept current while visible,
// and a run view with live logs.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { Widget } from '@lumino/widgets';

import {
  IDeployment,
  IFlowRun,
  ILogsPage,
  IWorkPool,
  isTerminal,
  requestAPI
} from './api';
import { fill, h } from './dom';
import { formatDuration, formatTime, parseValue, showValue } from './format';

/** How often the lists are refreshed while the panel is visible (ms). */
const REFRESH = 2000;
/** Long-poll of the run view's logs (s): the server answers at once on a line or a state change. */
const LOG_WAIT = 10;

/** Every state type, in the server's order (`nbflows.protocol.StateType`, from the page config). */
const STATES = PageConfig.getOption('nbflowsStates').split(' ').filter(Boolean);

export interface IPanelHooks {
  /** Open a run's executed notebook in the Lab. */
  openNotebook(run: IFlowRun): Promise<void>;
  /** A run was started from this Lab: notify when it ends. */
  started(run: IFlowRun): void;
}

export class FlowsPanel extends Widget {
  constructor(private hooks: IPanelHooks) {
    super();
    this.id = 'nbflows-flows-panel';
    this.addClass('nbflows-FlowsPanel');
    this.title.caption = 'Flows';
    const refresh = () => void this.refresh();
    this.stateFilter = h('select', { 'aria-label': 'Filter by state', name: 'state', onChange: refresh },
      h('option', { value: '' }, 'any state'), ...STATES.map(s => h('option', { value: s }, s)));
    this.flowFilter = h('input', { 'aria-label': 'Filter by flow', name: 'flow', placeholder: 'flow', onChange: refresh });
    this.deploymentFilter = h('select', { 'aria-label': 'Filter by deployment', name: 'deployment', onChange: refresh },
      h('option', { value: '' }, 'any deployment'));
    this.poolFilter = h('select', { 'aria-label': 'Filter by pool', name: 'pool', onChange: refresh },
      h('option', { value: '' }, 'any pool'));
    this.node.append(
      h('div', { className: 'nbflows-panelHeader' }, h('h2', {}, 'Flows'),
        h('button', { className: 'jp-mod-styled', title: 'Refresh', onClick: refresh }, '⟳')),
      this.message,
      h('section', { className: 'nbflows-section' }, h('h3', {}, 'Work pools'), this.pools),
      h('section', { className: 'nbflows-section' }, h('h3', {}, 'Deployments'), this.deployments),
      h('section', { className: 'nbflows-section' }, h('h3', {}, 'Flow runs'),
        h('div', { className: 'nbflows-filters' }, this.stateFilter, this.flowFilter, this.deploymentFilter, this.poolFilter),
        this.runs),
      this.runView);
  }

  /** Show one run (logs following live). */
  showRun(runId: string): void {
    this.selected = runId;
    this.logAfter = 0;
    this.logRun = null;
    fill(this.runView, h('div', { className: 'nbflows-hint' }, 'Loading run…'));
    void this.followLogs(runId);
  }

  protected onAfterShow(): void {
    void this.refresh();
    this.timer = window.setInterval(() => void this.refresh(), REFRESH);
  }

  protected onAfterHide(): void {
    window.clearInterval(this.timer);
  }

  dispose(): void {
    window.clearInterval(this.timer);
    this.selected = null;
    super.dispose();
  }

  async refresh(): Promise<void> {
    try {
      const dep = this.deploymentFilter.value;
      const [pools, deployments, runs] = await Promise.all([
        requestAPI<IWorkPool[]>('work_pools'),
        requestAPI<IDeployment[]>('deployments'),
        requestAPI<IFlowRun[]>('flow_runs', {
          query: {
            state: this.stateFilter.value, flow_name: this.flowFilter.value.trim(),
            deployment_id: dep, work_pool_name: this.poolFilter.value, limit: 50
          }
        })
      ]);
      this.message.textContent = '';
      this.renderPools(pools);
      await this.renderDeployments(deployments);
      this.renderRuns(runs);
      this.keepOptions(this.poolFilter, pools.map(p => [p.name, p.name]));
      this.keepOptions(this.deploymentFilter, deployments.map(d => [d.id, d.full_name]));
    } catch (error) {
      this.message.textContent = String((error as Error).message ?? error);
    }
  }

  private keepOptions(select: HTMLSelectElement, options: [string, string][]): void {
    const current = select.value;
    const first = select.options[0];
    fill(select, first, ...options.map(([value, label]) => h('option', { value }, label)));
    select.value = options.some(([v]) => v === current) ? current : '';
  }

  private renderPools(pools: IWorkPool[]): void {
    if (!pools.length) {
      fill(this.pools, h('div', { className: 'nbflows-hint' }, 'No work pools. Create one: nbflows work-pool create NAME --type process'));
      return;
    }
    fill(this.pools, ...pools.map(pool => h('div', { className: 'nbflows-item nbflows-pool', 'data-pool': pool.name },
      h('span', { className: `nbflows-badge nbflows-status-${pool.status}` }, pool.status),
      h('b', {}, pool.name), h('small', {}, ` ${pool.type} · ${pool.workers_online} worker(s) · ${pool.running_runs} running`),
      h('button', {
        className: 'jp-mod-styled', onClick: () => void this.act(() =>
          requestAPI(`work_pools/${encodeURIComponent(pool.name)}`, { method: 'PATCH', body: { paused: !pool.paused } }))
      }, pool.paused ? 'Resume' : 'Pause'))));
  }

  private async renderDeployments(deployments: IDeployment[]): Promise<void> {
    if (!deployments.length) {
      fill(this.deployments, h('div', { className: 'nbflows-hint' }, 'No deployments. Open a notebook and click "Schedule".'));
      return;
    }
    const upcoming = await Promise.all(deployments.map(d =>
      d.schedules.length && !d.paused
        ? requestAPI<IFlowRun[]>(`deployments/${d.id}/upcoming`, { query: { limit: 3 } }).catch(() => [])
        : Promise.resolve([] as IFlowRun[])));
    fill(this.deployments, ...deployments.map((d, i) => h('div', { className: 'nbflows-item nbflows-deployment', 'data-deployment': d.full_name },
      h('div', {},
        d.paused ? h('span', { className: 'nbflows-badge nbflows-status-PAUSED' }, 'PAUSED') : null,
        h('b', {}, d.full_name), h('small', {}, ` v${d.version} · ${d.work_pool_name}/${d.work_queue_name}`)),
      h('div', { className: 'nbflows-hint' },
        d.schedules.length ? d.schedules.map(s => describeSchedule(s)).join('; ') : 'no schedule',
        upcoming[i].length ? ` · next: ${upcoming[i].map(r => formatTime(r.expected_start_time)).join(', ')}` : ''),
      h('div', { className: 'nbflows-actions' },
        h('button', { className: 'jp-mod-styled nbflows-runNow', onClick: () => void this.runNow(d) }, 'Run now'),
        h('button', {
          className: 'jp-mod-styled', onClick: () => void this.act(() =>
            requestAPI(`deployments/${d.id}`, { method: 'PATCH', body: { paused: !d.paused } }))
        }, d.paused ? 'Resume' : 'Pause'),
        h('button', { className: 'jp-mod-styled jp-mod-warn', onClick: () => void this.deleteDeployment(d) }, 'Delete')))));
  }

  private renderRuns(runs: IFlowRun[]): void {
    if (!runs.length) {
      fill(this.runs, h('div', { className: 'nbflows-hint' }, 'No flow runs match.'));
      return;
    }
    fill(this.runs, ...runs.map(run => h('div', {
      className: `nbflows-item nbflows-run${run.id === this.selected ? ' nbflows-selected' : ''}`,
      'data-run': run.id, 'data-state': run.state.type, onClick: () => this.showRun(run.id)
    },
      h('span', { className: `nbflows-badge nbflows-state-${run.state.type}` }, run.state.name),
      h('b', {}, run.name),
      h('small', {}, ` ${run.deployment_name ? run.flow_name + '/' + run.deployment_name : run.flow_name} · ${formatDuration(run.duration)} · ${formatTime(run.start_time ?? run.expected_start_time)}`))));
  }

  /** Follow the selected run: long-poll its logs and state until it ends or another is shown. */
  private async followLogs(runId: string): Promise<void> {
    const log = h('pre', { className: 'nbflows-runLogs', 'aria-label': 'Run logs' });
    let header: HTMLElement | null = null;
    while (this.selected === runId && !this.isDisposed) {
      let page: ILogsPage;
      try {
        page = await requestAPI<ILogsPage>(`flow_runs/${runId}/logs`, {
          query: { after: this.logAfter, wait: this.logRun && isTerminal(this.logRun) ? 0 : LOG_WAIT, state: this.logRun?.state.type }
        });
      } catch (error) {
        fill(this.runView, h('div', { className: 'nbflows-error' }, String((error as Error).message ?? error)));
        return;
      }
      if (this.selected !== runId) {
        return;
      }
      const changed = !this.logRun || this.logRun.state.type !== page.flow_run.state.type || this.logRun.has_notebook !== page.flow_run.has_notebook;
      this.logRun = page.flow_run;
      this.logAfter = page.next_after;
      for (const line of page.items) {
        log.append(line.message.endsWith('\n') ? line.message : line.message + '\n');
      }
      if (page.items.length) {
        log.scrollTop = log.scrollHeight;
      }
      if (changed || header === null) {
        const next = this.runHeader(page.flow_run);
        if (header) {
          header.replaceWith(next);
        } else {
          fill(this.runView, next, log);
        }
        header = next;
      }
      if (isTerminal(page.flow_run) && !page.items.length) {
        return;
      }
    }
  }

  private runHeader(run: IFlowRun): HTMLElement {
    const terminal = isTerminal(run);
    return h('div', { className: 'nbflows-runHeader', 'data-run': run.id, 'data-state': run.state.type },
      h('h3', {}, `Run ${run.name}`),
      h('div', {}, h('span', { className: `nbflows-badge nbflows-state-${run.state.type}` }, run.state.name),
        ` attempt ${run.attempt} · ${formatDuration(run.duration)}`, run.state.message ? ` · ${run.state.message}` : ''),
      h('div', { className: 'nbflows-actions' },
        !terminal ? h('button', { className: 'jp-mod-styled jp-mod-warn nbflows-cancel', onClick: () => void this.cancel(run) }, 'Cancel') : null,
        // The server retries FAILED and CRASHED runs (a new attempt of the same run).
        run.kind === 'deployment' && ['FAILED', 'CRASHED'].includes(run.state.type)
          ? h('button', { className: 'jp-mod-styled nbflows-retry', onClick: () => void this.retry(run) }, 'Retry') : null,
        run.has_notebook ? h('button', { className: 'jp-mod-styled nbflows-openNotebook', onClick: () => void this.hooks.openNotebook(run) }, 'Open executed notebook') : null,
        h('button', { className: 'jp-mod-styled', onClick: () => { this.selected = null; fill(this.runView); } }, 'Close')));
  }

  private async runNow(d: IDeployment): Promise<void> {
    const form = new ParametersForm(d);
    const result = await showDialog({
      title: `Run ${d.full_name} now`,
      body: form,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Run' })]
    });
    if (!result.button.accept) {
      return;
    }
    await this.act(async () => {
      const run = await requestAPI<IFlowRun>(`deployments/${d.id}/runs`, { method: 'POST', body: { parameters: form.values } });
      this.hooks.started(run);
      this.showRun(run.id);
    });
  }

  private async cancel(run: IFlowRun): Promise<void> {
    const result = await showDialog({
      title: 'Cancel this run?',
      body: `${run.name} (${run.state.name}) will be stopped: its kernel or container is killed.`,
      buttons: [Dialog.cancelButton({ label: 'Keep running' }), Dialog.warnButton({ label: 'Cancel run' })]
    });
    if (result.button.accept) {
      await this.act(() => requestAPI(`flow_runs/${run.id}/cancel`, { method: 'POST' }));
    }
  }

  private async retry(run: IFlowRun): Promise<void> {
    await this.act(async () => {
      const again = await requestAPI<IFlowRun>(`flow_runs/${run.id}/set_state`, {
        method: 'POST', body: { type: 'SCHEDULED', retry: true, message: 'retried from JupyterLab' }
      });
      this.hooks.started(again);
      this.showRun(again.id);
    });
  }

  private async deleteDeployment(d: IDeployment): Promise<void> {
    const result = await showDialog({
      title: `Delete ${d.full_name}?`,
      body: 'Its schedules stop; past runs are kept.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (result.button.accept) {
      await this.act(() => requestAPI(`deployments/${d.id}`, { method: 'DELETE' }));
    }
  }

  /** Do `fn`, say its error at the top of the panel, refresh. */
  private async act(fn: () => Promise<unknown>): Promise<void> {
    try {
      await fn();
      this.message.textContent = '';
    } catch (error) {
      this.message.textContent = String((error as Error).message ?? error);
    }
    await this.refresh();
  }

  private readonly message = h('div', { className: 'nbflows-error', role: 'alert' });
  private readonly pools = h('div', { className: 'nbflows-list nbflows-pools' });
  private readonly deployments = h('div', { className: 'nbflows-list nbflows-deployments' });
  private readonly runs = h('div', { className: 'nbflows-list nbflows-runList' });
  private readonly runView = h('section', { className: 'nbflows-runView' });
  private readonly stateFilter: HTMLSelectElement;
  private readonly flowFilter: HTMLInputElement;
  private readonly deploymentFilter: HTMLSelectElement;
  private readonly poolFilter: HTMLSelectElement;
  private selected: string | null = null;
  private logAfter = 0;
  private logRun: IFlowRun | null = null;
  private timer: number | undefined;
}

function describeSchedule(s: any): string {
  const what = s.cron ? `cron ${s.cron}` : s.interval !== undefined ? `every ${s.interval} s` : s.rrule ? `rrule ${s.rrule}` : s.kind;
  return `${what}${s.timezone && s.timezone !== 'UTC' ? ` (${s.timezone})` : ''}${s.active ? '' : ' [inactive]'}`;
}

/** The parameters of a run: the deployment's values as placeholders; a field left empty keeps them. */
class ParametersForm extends Widget {
  constructor(d: IDeployment) {
    super();
    this.addClass('nbflows-fields');
    const props = d.parameter_schema?.properties ?? {};
    const names = Object.keys(props);
    if (!names.length) {
      this.node.textContent = 'This deployment has no parameters.';
    }
    for (const name of names) {
      const prop = props[name];
      const input = h('input', {
        name: `run-param-${name}`, 'aria-label': `Parameter ${name}`,
        placeholder: showValue(d.parameters[name] ?? prop.default ?? ''),
        onInput: () => {
          if (input.value === '') {
            delete this.values[name];
          } else {
            this.values[name] = parseValue(input.value, prop.type);
          }
        }
      });
      this.node.append(h('label', { className: 'nbflows-row' }, h('span', {}, name), input));
    }
  }

  readonly values: Record<string, unknown> = {};
}
