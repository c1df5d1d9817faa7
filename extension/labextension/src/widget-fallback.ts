// nbflows' notebook widgets without their kernel: a readable static view instead of "Error
// displaying widget: model not found".
//
// The kernel displays each nbflows widget with a bundle that holds, beside the usual widget view,
// `application/vnd.nbflows.widget+json` ({ text }: what the widget shows, as text). This renderer,
// preferred in notebooks, shows the live widget while its model exists (it delegates to the
// widget manager's own renderer) and that text otherwise: after a kernel restart, or when the
// saved notebook is opened again. While the widget is live, the text follows what it shows (it
// is written back into the output, so the saved notebook keeps the latest view).
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { PanelLayout, Widget } from '@lumino/widgets';

export const WIDGET_FALLBACK_MIME = 'application/vnd.nbflows.widget+json';
export const WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json';
/** Preferred over the widget view (ranked -10 by @jupyter-widgets/jupyterlab-manager). */
export const FALLBACK_RANK = -20;
/** The saved text follows the live view this long after its last change (ms). */
const SNAPSHOT_DELAY = 1000;

/** What this renderer needs of a notebook's rendermime registry. */
export interface IRegistry {
  getFactory(mimeType: string): IRenderMime.IRendererFactory | undefined;
  createRenderer(mimeType: string): IRenderMime.IRenderer;
}

interface IFallbackData {
  text?: string;
}

export function widgetFallbackFactory(registry: IRegistry): IRenderMime.IRendererFactory {
  return {
    safe: false,
    mimeTypes: [WIDGET_FALLBACK_MIME],
    createRenderer: () => new WidgetWithFallback(registry)
  };
}

export class WidgetWithFallback extends Widget implements IRenderMime.IRenderer {
  constructor(private registry: IRegistry) {
    super();
    this.layout = new PanelLayout();
    this.addClass('nbflows-WidgetOutput');
    this.fallback = new Widget({ node: document.createElement('pre') });
    this.fallback.addClass('nbflows-widgetFallback');
    this.fallback.node.title = 'The saved view of an nbflows widget (run the cell again for the live widget)';
    (this.layout as PanelLayout).addWidget(this.fallback);
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.model = model;
    const data = (model.data[WIDGET_FALLBACK_MIME] ?? {}) as IFallbackData;
    this.savedText = data.text ?? String(model.data['text/plain'] ?? '');
    if (this.live === null && model.data[WIDGET_VIEW_MIME] && this.registry.getFactory(WIDGET_VIEW_MIME)) {
      const live = this.registry.createRenderer(WIDGET_VIEW_MIME);
      this.live = live;
      live.hide();
      (this.layout as PanelLayout).addWidget(live);
      // The widget manager's renderer shows text only until a view is there ("Loading widget…",
      // or the error when the model is gone), and may render the view later by itself.
      this.observer = new MutationObserver(() => this.check());
      this.observer.observe(live.node, { childList: true, subtree: true, characterData: true });
      await live.renderModel(model);
    }
    this.check();
  }

  /** Show the live view when there is one, else the text; keep the saved text current. */
  private check(): void {
    const live = this.live !== null && this.live.node.querySelector('*') !== null;
    // Out of the page while the live view shows: the same text twice would confuse a reader.
    this.fallback.node.textContent = live ? '' : this.savedText;
    this.fallback.setHidden(live);
    this.live?.setHidden(!live);
    this.node.dataset.view = live ? 'live' : 'saved';
    if (live) {
      window.clearTimeout(this.timer);
      this.timer = window.setTimeout(() => this.snapshot(), SNAPSHOT_DELAY);
    }
  }

  private snapshot(): void {
    const model = this.model;
    if (this.isDisposed || this.live === null || model === null || !model.setData) {
      return;
    }
    const text = this.live.node.innerText.trim();
    const data = (model.data[WIDGET_FALLBACK_MIME] ?? {}) as IFallbackData;
    if (!text || text === data.text) {
      return;
    }
    model.setData({
      data: { ...model.data, [WIDGET_FALLBACK_MIME]: { ...data, text }, 'text/plain': text }
    });
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    this.observer?.disconnect();
    super.dispose();
  }

  private readonly fallback: Widget;
  private live: IRenderMime.IRenderer | null = null;
  private savedText = '';
  private model: IRenderMime.IMimeModel | null = null;
  private observer: MutationObserver | null = null;
  private timer: number | undefined;
}
