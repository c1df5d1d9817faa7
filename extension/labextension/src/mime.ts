// The live status line of a %%flow cell: the kernel displays a bundle of MIME type
// `application/vnd.nbflows.run+json` (with a text/plain fallback for other front ends); here it
// becomes "● COMPLETED · 1.2 s · attempt 1 · show run", kept current until the run ends.
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { IFlowRun, isTerminal, requestAPI, TERMINAL_STATES } from './api';
import { formatDuration } from './format';

export const MIME_TYPE = 'application/vnd.nbflows.run+json';
/** Asks the main plugin to show a run in the Flows panel (a MIME renderer has no app). */
export const OPEN_RUN_EVENT = 'nbflows:open-run';
const POLL = 1000;

interface IRunBundle {
  id: string;
  name?: string;
  flow_name?: string;
  state?: { type: string; name: string };
  attempt?: number;
  duration?: number | null;
}

export class RunStatusLine extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('nbflows-RunStatus');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const bundle = model.data[MIME_TYPE] as unknown as IRunBundle;
    this.runId = bundle.id;
    this.show_(bundle);
    window.clearTimeout(this.timer);
    if (!bundle.state || !TERMINAL_STATES.includes(bundle.state.type)) {
      this.poll();
    }
  }

  private poll(): void {
    this.timer = window.setTimeout(async () => {
      if (this.isDisposed) {
        return;
      }
      try {
        const run = await requestAPI<IFlowRun>(`flow_runs/${this.runId}`);
        this.show_(run);
        if (isTerminal(run)) {
          return;
        }
      } catch {
        // The server may be restarting: keep trying, slowly.
      }
      this.poll();
    }, POLL);
  }

  private show_(run: IRunBundle): void {
    const state = run.state ?? { type: 'RUNNING', name: 'Running' };
    this.node.replaceChildren();
    this.node.dataset.state = state.type;
    const dot = document.createElement('span');
    dot.className = `nbflows-badge nbflows-state-${state.type}`;
    dot.textContent = state.name;
    const link = document.createElement('a');
    link.href = '#';
    link.textContent = 'show run';
    link.addEventListener('click', event => {
      event.preventDefault();
      document.dispatchEvent(new CustomEvent(OPEN_RUN_EVENT, { detail: this.runId }));
    });
    const parts = [
      `flow ${run.flow_name ?? ''}`,
      run.duration !== undefined && run.duration !== null ? formatDuration(run.duration) : '',
      `attempt ${run.attempt ?? 1}`
    ].filter(Boolean);
    this.node.append(dot, ` ${parts.join(' · ')} · `, link);
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  private runId = '';
  private timer: number | undefined;
}

const extension: IRenderMime.IExtension = {
  id: 'nbflows:run-status',
  description: 'The live status line of a %%flow cell',
  rendererFactory: {
    safe: true,
    mimeTypes: [MIME_TYPE],
    createRenderer: () => new RunStatusLine()
  },
  rank: 0,
  dataType: 'json'
};

export default extension;
