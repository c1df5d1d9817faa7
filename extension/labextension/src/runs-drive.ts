// Executed notebooks of runs, as a read-only Jupyter drive: "nbflows-runs:<run id>.ipynb" opens
// the notebook the server stored for the run, without writing a copy among the user's files.
import { Contents } from '@jupyterlab/services';
import { Signal } from '@lumino/signaling';

import { requestAPI } from './api';

export const DRIVE_NAME = 'nbflows-runs';

export class RunsDrive implements Contents.IDrive {
  readonly name = DRIVE_NAME;
  readonly serverSettings: any = undefined;
  readonly fileChanged = new Signal<this, Contents.IChangedArgs>(this);
  isDisposed = false;

  constructor(serverSettings: any) {
    this.serverSettings = serverSettings;
  }

  dispose(): void {
    this.isDisposed = true;
    Signal.clearData(this);
  }

  async get(localPath: string, options?: Contents.IFetchOptions): Promise<Contents.IModel> {
    const name = localPath.split('/').pop() ?? localPath;
    if (!name.endsWith('.ipynb')) {
      return {
        name: '', path: '', type: 'directory', writable: false, created: '', last_modified: '',
        mimetype: '', format: 'json', content: []
      };
    }
    const runId = name.replace(/\.ipynb$/, '');
    const content = options?.content === false ? null : await requestAPI<any>(`flow_runs/${runId}/notebook`);
    // Cells not editable either (JupyterLab's own per-cell flag): this is a record of what ran.
    for (const cell of content?.cells ?? []) {
      cell.metadata = { ...(cell.metadata ?? {}), editable: false };
    }
    const now = new Date().toISOString();
    return {
      name, path: localPath, type: 'notebook', writable: false, created: now, last_modified: now,
      mimetype: 'application/x-ipynb+json', format: 'json', content
    };
  }

  async getDownloadUrl(localPath: string): Promise<string> {
    throw new Error('executed notebooks are downloaded from the dashboard');
  }

  private refuse(): Promise<never> {
    return Promise.reject(new Error('an executed notebook is read-only; save a copy with "Save Notebook As…"'));
  }

  newUntitled(): Promise<Contents.IModel> { return this.refuse(); }
  delete(): Promise<void> { return this.refuse(); }
  rename(): Promise<Contents.IModel> { return this.refuse(); }
  save(): Promise<Contents.IModel> { return this.refuse(); }
  copy(): Promise<Contents.IModel> { return this.refuse(); }
  createCheckpoint(): Promise<Contents.ICheckpointModel> { return this.refuse(); }
  async listCheckpoints(): Promise<Contents.ICheckpointModel[]> { return []; }
  restoreCheckpoint(): Promise<void> { return this.refuse(); }
  deleteCheckpoint(): Promise<void> { return this.refuse(); }
}
