// The deploy dialog: a notebook or one of its %%flow cells → a deployment, with everything the
// server will check (schedules, parameters, job variables) checked by the server as it is typed.
import { Widget } from '@lumino/widgets';

import {
  IDeployPreview,
  IDeployment,
  IImageBuild,
  IWorkPool,
  IWorker,
  ISchedulePreview,
  requestAPI
} from './api';
import { fill, h } from './dom';
import { formatTime, parseValue, pinnedKeys, poolBaseImage, scheduleSpec, showValue } from './format';

const WHOLE = '';

export interface IDeployOptions {
  /** The notebook's path, relative to the server's root. */
  path: string;
  /** Said at the top, e.g. that the notebook was saved first. */
  note?: string;
  /** Called with the new deployment. */
  deployed?: (deployment: IDeployment) => void;
}

/** Open the deploy dialog over the page; resolves with the deployment, or null if cancelled. */
export function openDeployDialog(options: IDeployOptions): Promise<IDeployment | null> {
  return new Promise(resolve => {
    const dialog = new DeployDialog(options, resolve);
    Widget.attach(dialog, document.body);
    void dialog.load();
  });
}

function debounce(fn: () => void, ms: number): () => void {
  let timer: number | undefined;
  return () => {
    window.clearTimeout(timer);
    timer = window.setTimeout(fn, ms);
  };
}

class DeployDialog extends Widget {
  constructor(
    private options: IDeployOptions,
    private done: (d: IDeployment | null) => void
  ) {
    super();
    this.addClass('jp-Dialog');
    this.addClass('nbflows-DeployDialog');
    this.id = 'nbflows-deploy-dialog';
    const stem = options.path.split('/').pop()!.replace(/\.ipynb$/, '');
    this.flow = h('select', { 'aria-label': 'Flow', name: 'flow', onChange: () => this.flowChanged() },
      h('option', { value: WHOLE }, `Whole notebook (${stem})`));
    this.name = h('input', { name: 'name', 'aria-label': 'Deployment name', value: 'default' });
    this.pool = h('select', { name: 'pool', 'aria-label': 'Work pool', onChange: () => this.poolChanged() });
    this.queue = h('select', { name: 'queue', 'aria-label': 'Work queue' });
    this.poolInfo = h('div', { className: 'nbflows-hint nbflows-poolInfo' });
    const check = debounce(() => void this.checkSchedule(), 250);
    this.scheduleKind = h('select', { name: 'schedule-kind', 'aria-label': 'Schedule kind', onChange: check },
      ...['none', 'cron', 'interval', 'rrule'].map(k =>
        h('option', { value: k }, k === 'none' ? 'No schedule (run on demand)' : k)));
    this.scheduleValue = h('input', {
      name: 'schedule', 'aria-label': 'Schedule expression', placeholder: '0 6 * * *  ·  3600 or 1h  ·  FREQ=DAILY;BYHOUR=6',
      onInput: check
    });
    this.timezone = h('input', {
      name: 'timezone', 'aria-label': 'Time zone',
      value: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC', onInput: check
    });
    this.schedulePreview = h('div', { className: 'nbflows-preview nbflows-schedulePreview' });
    this.parameters = h('div', { className: 'nbflows-fields nbflows-parameters' });
    this.parametersStatus = h('div', { className: 'nbflows-hint nbflows-parametersStatus' });
    this.jobVariables = h('div', { className: 'nbflows-fields nbflows-jobVariables' });
    this.cells = h('div', { className: 'nbflows-cells' });
    this.imageName = h('input', {
      name: 'image', 'aria-label': 'Image name', placeholder: 'e.g. sales-report (leave empty: the pool\'s image)',
      onInput: () => this.imageChanged()
    });
    this.baseImage = h('input', { name: 'base-image', 'aria-label': 'Base image', onInput: () => this.imageChanged() });
    this.buildImage = h('input', { type: 'checkbox', name: 'build', 'aria-label': 'Build the image', checked: true, onChange: () => this.imageChanged() });
    this.pushImage = h('input', { type: 'checkbox', name: 'push', 'aria-label': 'Push the image', onChange: () => this.imageChanged() });
    this.buildButton = h('button', { className: 'jp-mod-styled nbflows-buildButton', onClick: () => void this.build() }, 'Build image');
    this.buildStatus = h('div', { className: 'nbflows-hint nbflows-buildStatus', role: 'status' });
    this.buildLog = h('pre', { className: 'nbflows-buildLog', 'aria-label': 'Build output' });
    this.imageSection = h('fieldset', { className: 'nbflows-image' }, h('legend', {}, 'Image (docker pool)'),
      h('label', { className: 'nbflows-row' }, h('span', {}, 'Image name'), this.imageName),
      h('label', { className: 'nbflows-row' }, h('span', {}, 'Base image'), this.baseImage),
      h('label', { className: 'nbflows-row nbflows-check' }, h('span', {}, 'Build'), this.buildImage,
        h('small', {}, 'build it here (off: use the reference a build would give, e.g. built by CI)')),
      h('label', { className: 'nbflows-row nbflows-check' }, h('span', {}, 'Push'), this.pushImage,
        h('small', {}, 'push it to its registry after the build (workers on other machines pull it)')),
      h('div', { className: 'nbflows-actions' }, this.buildButton,
        h('small', {}, ' Deploy builds it first when it is not built yet.')),
      this.buildStatus, this.buildLog);
    this.imageSection.hidden = true;
    this.error = h('div', { className: 'nbflows-error', role: 'alert' });
    this.deployButton = h('button', {
      className: 'jp-Dialog-button jp-mod-accept jp-mod-styled', onClick: () => void this.deploy()
    }, h('div', { className: 'jp-Dialog-buttonLabel' }, 'Deploy'));
    this.checkParameters = debounce(() => void this.preview(), 300);

    const row = (label: string, ...input: HTMLElement[]) =>
      h('label', { className: 'nbflows-row' }, h('span', {}, label), ...input);
    this.node.append(
      h('div', { className: 'jp-Dialog-content' },
        h('div', { className: 'jp-Dialog-header' }, `Deploy ${options.path}`),
        h('div', { className: 'jp-Dialog-body nbflows-DeployDialog-body' },
          options.note ? h('div', { className: 'nbflows-note' }, options.note) : null,
          row('Flow', this.flow),
          row('Deployment name', this.name),
          row('Work pool', this.pool),
          this.poolInfo,
          row('Work queue', this.queue),
          this.imageSection,
          h('fieldset', {}, h('legend', {}, 'Schedule'),
            row('Kind', this.scheduleKind), row('Expression', this.scheduleValue),
            row('Time zone', this.timezone), this.schedulePreview),
          h('fieldset', {}, h('legend', {}, 'Parameters'), this.parameters, this.parametersStatus),
          h('fieldset', {}, h('legend', {}, 'Job variables'), this.jobVariables),
          h('fieldset', {}, h('legend', {}, 'Cells the deployment will hold'), this.cells),
          this.error),
        h('div', { className: 'jp-Dialog-footer' },
          h('button', { className: 'jp-Dialog-button jp-mod-reject jp-mod-styled', onClick: () => this.finish(null) },
            h('div', { className: 'jp-Dialog-buttonLabel' }, 'Cancel')),
          this.deployButton)));
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Escape') {
        this.finish(null);
      }
    });
  }

  /** Pools and the notebook's flows, parameters and cells. */
  async load(): Promise<void> {
    try {
      const [pools, preview] = await Promise.all([
        requestAPI<IWorkPool[]>('work_pools'),
        requestAPI<IDeployPreview>('previews/deploy', { method: 'POST', body: { path: this.options.path } })
      ]);
      this.pools = pools;
      for (const flow of preview.flows) {
        this.flow.append(h('option', { value: flow.name }, `%%flow ${flow.name} (cell ${flow.cell_index + 1})`));
      }
      // A notebook with flows is most often deployed for one of them.
      if (preview.flows.length) {
        this.flow.value = preview.flows[0].name;
      }
      fill(this.pool, ...pools.map(p => h('option', { value: p.name }, `${p.name} (${p.type})`)));
      if (!pools.length) {
        this.poolInfo.textContent =
          'No work pool yet: create one in the Flows panel, or `nbflows work-pool create NAME --type process`.';
      }
      this.poolChanged();
      await this.flowChanged();
      await this.checkSchedule();
    } catch (error) {
      this.showError(error);
    }
  }

  private async flowChanged(): Promise<void> {
    this.values = {};
    const flow = this.flow.value;
    if (flow) {
      this.name.value = this.name.value || 'default';
    }
    await this.preview(true);
  }

  /** Ask the server what this deployment holds and whether the parameters are valid. */
  private async preview(rebuild = false): Promise<void> {
    try {
      const result = await requestAPI<IDeployPreview>('previews/deploy', {
        method: 'POST',
        body: { path: this.options.path, flow_name: this.flow.value || null, parameters: this.values }
      });
      this.lastPreview = result;
      if (rebuild) {
        this.renderParameters(result);
      }
      this.renderCells(result);
      this.parametersStatus.textContent = Object.keys(this.values).length
        ? '✓ parameters valid'
        : Object.keys(result.parameter_schema.properties).length
          ? 'Defaults from the parameters cell; set a value to override it.'
          : 'This flow has no parameters (no cell tagged "parameters").';
      this.parametersStatus.classList.remove('nbflows-invalid');
      this.error.textContent = '';
    } catch (error) {
      this.parametersStatus.textContent = String((error as Error).message ?? error);
      this.parametersStatus.classList.add('nbflows-invalid');
    }
  }

  private renderParameters(preview: IDeployPreview): void {
    const props = preview.parameter_schema.properties;
    fill(this.parameters, ...Object.entries(props).map(([name, prop]) => {
      const input = h('input', {
        name: `param-${name}`, 'aria-label': `Parameter ${name}`,
        placeholder: showValue(prop.default ?? ''),
        onInput: () => {
          if (input.value === '') {
            delete this.values[name];
          } else {
            this.values[name] = parseValue(input.value, prop.type);
          }
          this.checkParameters();
        }
      });
      return h('label', { className: 'nbflows-row' },
        h('span', { title: prop.description ?? '' }, name, h('small', {}, ` ${prop.type ?? 'any'}`)), input);
    }));
  }

  private renderCells(preview: IDeployPreview): void {
    const head = preview.kind === 'cell'
      ? `Flow "${preview.flow_name}": ${preview.cells.length} cells extracted from the notebook.`
      : `The whole notebook: ${preview.cells.length} cells, run top to bottom.`;
    fill(this.cells, h('div', { className: 'nbflows-hint' }, head),
      ...preview.cells.map(cell => h('div', { className: 'nbflows-cell' },
        h('span', { className: 'nbflows-cellIndex' }, `[${cell.index + 1}]${cell.tags.includes('parameters') ? ' parameters' : ''}`),
        h('pre', {}, cell.source))));
  }

  private poolChanged(): void {
    const pool = this.pools.find(p => p.name === this.pool.value);
    if (!pool) {
      return;
    }
    fill(this.queue, ...pool.queues.map(q =>
      h('option', { value: q.name }, `${q.name} (priority ${q.priority}${q.paused ? ', paused' : ''})`)));
    this.poolInfo.textContent = `${pool.status}${pool.paused ? '' : ''} · ${pool.workers_online} worker(s) online · ${pool.running_runs} running` +
      (pool.status_reason ? ` · ${pool.status_reason}` : '');
    this.poolInfo.dataset.status = pool.status;
    void requestAPI<IWorker[]>(`work_pools/${encodeURIComponent(pool.name)}/workers`).then(workers => {
      if (this.pool.value === pool.name && workers.length) {
        this.poolInfo.textContent += ' · ' + workers.map(w => `${w.name}: ${w.status}`).join(', ');
      }
    }).catch(() => undefined);
    this.renderJobVariables(pool);
    this.imageSection.hidden = pool.type !== 'docker';
    const [base, pinned] = poolBaseImage(pool);
    this.baseImage.placeholder = base ? `${base}${pinned ? ' (pinned by the pool)' : ' (the pool\'s default)'}` : 'the server\'s default (NBFLOWS_BASE_IMAGE or python:X.Y-slim)';
    this.baseImage.readOnly = pinned;
    this.imageChanged();
  }

  /** The image options as the build route takes them, or null when no image is asked for. */
  private imageRequest(): Record<string, unknown> | null {
    const pool = this.pools.find(p => p.name === this.pool.value);
    const image = this.imageName.value.trim();
    if (!pool || pool.type !== 'docker' || !image) {
      return null;
    }
    return {
      path: this.options.path,
      flow_name: this.flow.value || null,
      work_pool_name: pool.name,
      job_variables: this.jobValues,
      image,
      base_image: this.baseImage.value.trim() || null,
      build: this.buildImage.checked,
      push: this.pushImage.checked
    };
  }

  private imageChanged(): void {
    // A build is for the options it was made with.
    this.built = null;
    this.buildButton.textContent = this.buildImage.checked ? 'Build image' : 'Compute reference';
  }

  /** Build (or only name) the image, its output following live; resolves with the deploy
   * request's `image`, or null when it failed (the reason is in the dialog). */
  async build(): Promise<Record<string, unknown> | null> {
    const request = this.imageRequest();
    if (request === null) {
      this.setBuildStatus('FAILED', 'Give an image name to build one (a docker pool).');
      return null;
    }
    const key = JSON.stringify(request);
    if (this.built && this.builtKey === key) {
      return this.built;
    }
    this.buildButton.disabled = true;
    this.deployButton.disabled = true;
    fill(this.buildLog);
    this.setBuildStatus('RUNNING', 'Starting the build…');
    try {
      let page = await requestAPI<IImageBuild>('image_builds', { method: 'POST', body: request });
      for (;;) {
        for (const line of page.lines) {
          this.buildLog.append(line + '\n');
        }
        if (page.lines.length) {
          this.buildLog.scrollTop = this.buildLog.scrollHeight;
        }
        if (page.state !== 'RUNNING' || this.isDisposed) {
          break;
        }
        this.setBuildStatus('RUNNING', `Building… ${page.next_after} line(s)`);
        page = await requestAPI<IImageBuild>(`image_builds/${page.id}`, { query: { after: page.next_after, wait: 10 } });
      }
      if (page.state === 'COMPLETED' && page.image) {
        this.built = page.image;
        this.builtKey = key;
        const what = page.image.built ? 'built' : request.build ? 'already built' : 'not built';
        this.setBuildStatus('COMPLETED', `✓ ${page.image.reference} (${what}${page.image.pushed ? ', pushed' : ''})`);
        return page.image;
      }
      this.setBuildStatus('FAILED', `✗ ${page.error ?? 'the build failed'}`);
      return null;
    } catch (error) {
      this.setBuildStatus('FAILED', String((error as Error).message ?? error));
      return null;
    } finally {
      this.buildButton.disabled = false;
      this.deployButton.disabled = false;
    }
  }

  private setBuildStatus(state: string, text: string): void {
    this.buildStatus.dataset.state = state;
    this.buildStatus.textContent = text;
    this.buildStatus.classList.toggle('nbflows-invalid', state === 'FAILED');
  }

  private renderJobVariables(pool: IWorkPool): void {
    this.jobValues = {};
    const template = pool.base_job_template ?? {};
    const props: Record<string, any> = template.variables?.properties ?? {};
    const configuration = template.job_configuration ?? {};
    const editable = Object.entries(props).map(([name, prop]) => {
      const input = h('input', {
        name: `var-${name}`, 'aria-label': `Job variable ${name}`,
        placeholder: showValue(prop.default ?? ''),
        onInput: () => {
          if (input.value === '') {
            delete this.jobValues[name];
          } else {
            this.jobValues[name] = parseValue(input.value, prop.type);
          }
        }
      });
      return h('label', { className: 'nbflows-row' },
        h('span', { title: prop.description ?? '' }, prop.title ?? name), input);
    });
    const pinned = pinnedKeys(configuration).map(key => h('label', { className: 'nbflows-row nbflows-pinned' },
      h('span', { title: 'Pinned by the work pool: its base job template fixes the value' }, `${key} 🔒`),
      h('input', { readOnly: true, value: showValue(configuration[key]), 'aria-label': `Pinned ${key}` })));
    fill(this.jobVariables, ...editable, ...pinned);
    if (!editable.length && !pinned.length) {
      this.jobVariables.textContent = 'This pool declares no job variables.';
    }
  }

  private scheduleSpec(): Record<string, unknown> | null {
    return scheduleSpec(this.scheduleKind.value, this.scheduleValue.value, this.timezone.value);
  }

  private async checkSchedule(): Promise<boolean> {
    const spec = this.scheduleSpec();
    if (spec === null) {
      fill(this.schedulePreview, this.scheduleKind.value === 'none'
        ? 'No schedule: the deployment runs when asked (Run now).'
        : 'Type an expression.');
      this.schedulePreview.classList.remove('nbflows-invalid');
      return true;
    }
    try {
      const result = await requestAPI<ISchedulePreview>('previews/schedules', {
        method: 'POST', body: { schedules: [spec], count: 5 }
      });
      const item = result.schedules[0];
      const zone = String(spec.timezone);
      fill(this.schedulePreview, h('div', {}, `✓ ${item.description} — next runs (${zone}):`),
        h('ol', {}, ...item.next_times.map(t => h('li', {}, formatTime(t, zone)))));
      this.schedulePreview.classList.remove('nbflows-invalid');
      return true;
    } catch (error) {
      fill(this.schedulePreview, String((error as Error).message ?? error));
      this.schedulePreview.classList.add('nbflows-invalid');
      return false;
    }
  }

  private async deploy(): Promise<void> {
    this.error.textContent = '';
    const schedule = this.scheduleSpec();
    let image: Record<string, unknown> | null = null;
    if (this.imageRequest() !== null) {
      image = await this.build();
      if (image === null) {
        this.error.textContent = 'Not deployed: the image was not built (see the build output above).';
        return;
      }
    }
    this.deployButton.disabled = true;
    try {
      const deployment = await requestAPI<IDeployment>('deployments', {
        method: 'POST',
        body: {
          path: this.options.path,
          flow_name: this.flow.value || null,
          name: this.name.value.trim(),
          work_pool_name: this.pool.value,
          work_queue_name: this.queue.value || null,
          parameters: this.values,
          job_variables: this.jobValues,
          schedules: schedule ? [schedule] : [],
          ...(image ? { image } : {})
        }
      });
      this.options.deployed?.(deployment);
      this.finish(deployment);
    } catch (error) {
      this.showError(error);
    } finally {
      this.deployButton.disabled = false;
    }
  }

  private showError(error: unknown): void {
    this.error.textContent = String((error as Error).message ?? error);
  }

  private finish(result: IDeployment | null): void {
    this.dispose();
    this.done(result);
  }

  private readonly flow: HTMLSelectElement;
  private readonly name: HTMLInputElement;
  private readonly pool: HTMLSelectElement;
  private readonly queue: HTMLSelectElement;
  private readonly poolInfo: HTMLDivElement;
  private readonly scheduleKind: HTMLSelectElement;
  private readonly scheduleValue: HTMLInputElement;
  private readonly timezone: HTMLInputElement;
  private readonly schedulePreview: HTMLDivElement;
  private readonly parameters: HTMLDivElement;
  private readonly parametersStatus: HTMLDivElement;
  private readonly jobVariables: HTMLDivElement;
  private readonly cells: HTMLDivElement;
  private readonly error: HTMLDivElement;
  private readonly deployButton: HTMLButtonElement;
  private readonly imageName: HTMLInputElement;
  private readonly baseImage: HTMLInputElement;
  private readonly buildImage: HTMLInputElement;
  private readonly pushImage: HTMLInputElement;
  private readonly buildButton: HTMLButtonElement;
  private readonly buildStatus: HTMLDivElement;
  private readonly buildLog: HTMLPreElement;
  private readonly imageSection: HTMLFieldSetElement;
  private built: Record<string, any> | null = null;
  private builtKey = '';
  private readonly checkParameters: () => void;
  private pools: IWorkPool[] = [];
  private values: Record<string, unknown> = {};
  private jobValues: Record<string, unknown> = {};
  lastPreview: IDeployPreview | null = null;
}
