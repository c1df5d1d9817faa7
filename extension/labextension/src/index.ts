// nbflows in JupyterLab: commands (palette, notebook toolbar, file browser menu), the Flows side
// panel, a launcher tile for the dashboard, a status bar item, notifications for runs started
// here, and a read-only drive for executed notebooks.
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IFrame,
  MainAreaWidget,
  Notification,
  ToolbarButton
} from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { dashboardURL, IFlowRun, isTerminal, requestAPI } from './api';
import { openDeployDialog } from './deploy';
import { formatDuration } from './format';
import { OPEN_RUN_EVENT } from './mime';
import { FlowsPanel } from './panel';
import { DRIVE_NAME, RunsDrive } from './runs-drive';
import { FALLBACK_RANK, widgetFallbackFactory } from './widget-fallback';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<g class="jp-icon3" fill="#616161"><circle cx="5" cy="6" r="3"/><circle cx="19" cy="6" r="3"/><circle cx="12" cy="18" r="3"/>
<path d="M6.5 8.2l4.3 7.3 1.7-1-4.3-7.3zM17.5 8.2l-4.3 7.3-1.7-1 4.3-7.3z"/></g></svg>`;
export const flowsIcon = new LabIcon({ name: 'nbflows:flows', svgstr: ICON_SVG });

export namespace CommandIDs {
  export const deploy = 'nbflows:deploy';
  export const openPanel = 'nbflows:open-panel';
  export const openDashboard = 'nbflows:open-dashboard';
  export const openRun = 'nbflows:open-run';
}

/** Runs started from this Lab that have not ended: notified when they do. */
const watched = new Map<string, string>();

function watch(run: IFlowRun): void {
  watched.set(run.id, run.name);
}

async function checkWatched(): Promise<void> {
  for (const [id, name] of [...watched]) {
    try {
      const run = await requestAPI<IFlowRun>(`flow_runs/${id}`);
      if (!isTerminal(run)) {
        continue;
      }
      watched.delete(id);
      const text = `Flow run ${name} ${run.state.name.toLowerCase()} (${formatDuration(run.duration)})`;
      const options = {
        autoClose: 8000,
        actions: [{ label: 'Show run', callback: () => document.dispatchEvent(new CustomEvent(OPEN_RUN_EVENT, { detail: id })) }]
      };
      if (run.state.type === 'COMPLETED') {
        Notification.success(text, options);
      } else {
        Notification.error(`${text}${run.state.message ? ': ' + run.state.message : ''}`, options);
      }
    } catch {
      watched.delete(id);
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbflows:plugin',
  description: 'Deploy notebooks and %%flow cells, watch work pools, deployments and flow runs.',
  autoStart: true,
  requires: [ILabShell, IDocumentManager],
  optional: [INotebookTracker, IFileBrowserFactory, ICommandPalette, ILauncher, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    docManager: IDocumentManager,
    notebooks: INotebookTracker | null,
    browsers: IFileBrowserFactory | null,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    statusBar: IStatusBar | null
  ) => {
    const { commands } = app;
    app.serviceManager.contents.addDrive(new RunsDrive(app.serviceManager.serverSettings));

    const panel = new FlowsPanel({
      started: watch,
      openNotebook: async run => {
        const widget = docManager.openOrReveal(`${DRIVE_NAME}:${run.id}.ipynb`, 'Notebook');
        if (widget instanceof NotebookPanel) {
          // A record of what ran: no kernel, no editing.
          widget.sessionContext.kernelPreference = { shouldStart: false, canStart: false };
          await widget.context.ready;
          widget.title.label = `${run.name} (executed, read-only)`;
          widget.context.model.readOnly = true;
          widget.addClass('nbflows-executedNotebook');
        }
      }
    });
    panel.title.icon = flowsIcon;
    shell.add(panel, 'right', { rank: 600 });
    document.addEventListener(OPEN_RUN_EVENT, event => {
      void commands.execute(CommandIDs.openRun, { runId: (event as CustomEvent).detail });
    });
    window.setInterval(() => void checkWatched(), 3000);

    /** The notebook to deploy: the given path, else the current notebook; saved first. */
    const notebookToDeploy = async (path?: string): Promise<{ path: string; note?: string } | null> => {
      let widget = path ? docManager.findWidget(path) : notebooks?.currentWidget ?? undefined;
      if (!path && widget) {
        path = widget.context.path;
      }
      if (!path) {
        return null;
      }
      if (widget && widget.context.model.dirty && !widget.context.model.readOnly) {
        await widget.context.save();
        return { path, note: 'The notebook had unsaved changes: it was saved first, and that saved version is deployed.' };
      }
      return { path };
    };

    commands.addCommand(CommandIDs.deploy, {
      label: args => (args.fromBrowser ? 'Deploy notebook…' : 'Schedule / deploy this notebook…'),
      caption: 'Deploy the notebook or one of its %%flow cells to a work pool, on a schedule or on demand',
      icon: flowsIcon,
      isEnabled: () => true,
      execute: async args => {
        let path = args.path as string | undefined;
        if (!path && args.fromBrowser && browsers?.tracker.currentWidget) {
          const item = browsers.tracker.currentWidget.selectedItems().next();
          path = item && !item.done ? item.value.path : undefined;
        }
        const target = await notebookToDeploy(path);
        if (!target) {
          Notification.warning('Open a notebook (or select one in the file browser) to deploy it.');
          return;
        }
        const deployment = await openDeployDialog(target);
        if (deployment) {
          Notification.success(`Deployed ${deployment.full_name} (version ${deployment.version}) to ${deployment.work_pool_name}`, { autoClose: 5000 });
          shell.activateById(panel.id);
          void panel.refresh();
        }
      }
    });
    commands.addCommand(CommandIDs.openPanel, {
      label: 'Show the Flows panel',
      icon: flowsIcon,
      execute: () => shell.activateById(panel.id)
    });
    commands.addCommand(CommandIDs.openRun, {
      label: 'Show a flow run',
      execute: args => {
        shell.activateById(panel.id);
        panel.showRun(String(args.runId));
      }
    });
    commands.addCommand(CommandIDs.openDashboard, {
      label: 'nbflows Dashboard',
      caption: 'Work pools, deployments and flow runs (the /nbflows/ dashboard)',
      icon: flowsIcon,
      execute: () => {
        const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-same-origin', 'allow-forms', 'allow-popups'] });
        frame.url = dashboardURL();
        const widget = new MainAreaWidget({ content: frame });
        widget.id = `nbflows-dashboard-${Date.now()}`;
        widget.title.label = 'nbflows Dashboard';
        widget.title.icon = flowsIcon;
        widget.title.closable = true;
        shell.add(widget, 'main');
        shell.activateById(widget.id);
      }
    });

    palette?.addItem({ command: CommandIDs.deploy, category: 'nbflows' });
    palette?.addItem({ command: CommandIDs.openPanel, category: 'nbflows' });
    palette?.addItem({ command: CommandIDs.openDashboard, category: 'nbflows' });
    launcher?.add({ command: CommandIDs.openDashboard, category: 'Other', rank: 1 });

    app.contextMenu.addItem({
      command: CommandIDs.deploy,
      args: { fromBrowser: true },
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 10
    });

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (nb: NotebookPanel) => {
        // nbflows widgets: live while their model exists, a saved view otherwise.
        nb.content.rendermime.addFactory(widgetFallbackFactory(nb.content.rendermime), FALLBACK_RANK);
        if (nb.context.path.startsWith(`${DRIVE_NAME}:`)) {
          return; // an executed notebook: a record, not something to deploy
        }
        const button = new ToolbarButton({
          className: 'nbflows-scheduleButton',
          label: 'Schedule',
          icon: flowsIcon,
          tooltip: 'Deploy this notebook or one of its %%flow cells (nbflows)',
          onClick: () => void commands.execute(CommandIDs.deploy, { path: nb.context.path })
        });
        nb.toolbar.insertItem(10, 'nbflows-schedule', button);
        return button;
      }
    });

    if (statusBar) {
      // Its first requests wait for the Lab to be restored: none competes with the page load.
      const item = new StatusItem(() => shell.activateById(panel.id), app.restored);
      statusBar.registerStatusItem('nbflows:status', { item, align: 'left', rank: 5 });
    }
  }
};

/** "N running · M failed (24 h)", refreshed every few seconds; a click shows the panel. */
class StatusItem extends Widget {
  constructor(onClick: () => void, restored: Promise<void>) {
    super();
    this.addClass('nbflows-StatusItem');
    this.addClass('jp-StatusBar-TextItem');
    this.node.title = 'nbflows: flow runs running now, and failed in the last 24 hours';
    this.node.textContent = 'Flows: …';
    this.node.addEventListener('click', onClick);
    const start = () => {
      void this.update_();
      window.setInterval(() => void this.update_(), 10000);
    };
    void restored.then(start, start);
  }

  private async update_(): Promise<void> {
    try {
      const [running, failed] = await Promise.all([
        requestAPI<IFlowRun[]>('flow_runs', { query: { state: 'RUNNING', limit: 1000 } }),
        requestAPI<IFlowRun[]>('flow_runs', { query: { state: 'FAILED,CRASHED', limit: 1000 } })
      ]);
      const since = Date.now() - 24 * 3600 * 1000;
      const recent = failed.filter(r => Date.parse(r.end_time ?? r.created ?? '') >= since).length;
      this.node.textContent = `Flows: ${running.length} running · ${recent} failed (24 h)`;
    } catch {
      this.node.textContent = 'Flows: server unavailable';
    }
  }
}

export default plugin;
