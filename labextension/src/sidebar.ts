import { refreshIcon } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { confirmDelete } from './confirm';
import { DetailsView } from './details';
import { Child, h, PartCache, replaceChildren } from './dom';
import { formatVersion } from './format';
import { deployIcon } from './icon';
import { renderModels } from './modelsview';
import { DeployStore } from './store';
import { buildTree, renderTree } from './tree';
import { IDeployment } from './types';

/**
 * The left-sidebar panel: errors, the clusters > nodepools > deployments
 * tree, the selected deployment's details, then the models.
 *
 * Plain DOM in one Lumino widget. Each section is rebuilt only when what it
 * shows changed (compared as JSON), because the store updates every second
 * and most updates change nothing.
 */
export class DeploySidebar extends Widget {
  constructor(options: DeploySidebar.IOptions) {
    super();
    this._store = options.store;
    this._insertPredict = options.insertPredict;
    this.id = 'jupyter-deploy-sidebar';
    this.addClass('jd-Sidebar');
    this.title.icon = deployIcon;
    this.title.caption = 'Deployments';

    this._details = new DetailsView({
      start: id => void this._store.startDeployment(id),
      stop: id => void this._store.stopDeployment(id),
      remove: id => void this._confirmDeleteDeployment(id),
      insertPredict: d => this._onInsertPredict(d)
    });

    const refresh = h(
      'button',
      {
        class: 'jd-IconButton jd-RefreshButton',
        type: 'button',
        title: 'Refresh',
        'aria-label': 'Refresh',
        onclick: () => this._store.refresh()
      },
      refreshIcon.element({ tag: 'span' })
    );
    replaceChildren(
      this.node,
      h(
        'header',
        { class: 'jd-Header' },
        h('h2', { class: 'jd-Title' }, 'Deployments'),
        refresh
      ),
      h(
        'div',
        { class: 'jd-Body' },
        this._messages,
        this._tree,
        this._details.node,
        h('h3', { class: 'jd-SectionTitle' }, 'Models'),
        this._models
      )
    );

    this._store.changed.connect(this._render, this);
    this._render();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._store.changed.disconnect(this._render, this);
    super.dispose();
  }

  /** Fetch at once when the panel opens: the polls stood by while it was closed. */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._store.refresh();
  }

  private _render(): void {
    this._renderMessages();
    this._renderTree();
    this._renderDetails();
    this._renderModels();
  }

  private _renderMessages(): void {
    const store = this._store;
    const errors = store.errors;
    const down = store.daemonDown;
    const starting = store.isBusy('daemon', '');
    this._parts.update(this._messages, 'messages', [errors, down, starting], () => [
      ...(down === null ? [] : [this._daemonDown(down, starting)]),
      ...errors.map(message =>
        h(
          'div',
          {
            class: 'jd-Error',
            role: 'alert',
            title: 'Click to dismiss',
            onclick: () => store.dismissError(message)
          },
          message
        )
      )
    ]);
  }

  /** No daemon answers: say so once, and offer to start it. */
  private _daemonDown(message: string, starting: boolean): HTMLElement {
    return h(
      'div',
      { class: 'jd-Daemon', role: 'status' },
      h('div', { class: 'jd-DaemonMessage' }, message),
      h(
        'div',
        { class: 'jd-Muted' },
        'Start runs it in the background, as the first Client() or %%deploy in a notebook does.'
      ),
      h(
        'button',
        {
          class: 'jp-mod-styled jp-mod-accept jd-StartDaemonButton',
          type: 'button',
          disabled: starting,
          onclick: () => void this._store.startDaemon()
        },
        starting ? 'Starting…' : 'Start'
      )
    );
  }

  private _renderTree(): void {
    const store = this._store;
    const deployments = store.deployments;
    const clusters = store.clusters ?? [];
    const nodepools = store.nodepools ?? [];
    const failed =
      deployments === null &&
      (store.errors.length > 0 || store.daemonDown !== null);
    const key = [
      deployments,
      clusters,
      nodepools,
      store.selectedId,
      [...this._collapsed],
      failed
    ];
    // Keep keyboard focus on the same row across the rebuild.
    const focused = (document.activeElement as HTMLElement | null)?.closest?.(
      '.jd-Deployment'
    );
    const focusedId =
      focused && this._tree.contains(focused)
        ? focused.getAttribute('data-deployment-id')
        : null;

    this._parts.update(this._tree, 'tree', key, () => {
      if (deployments === null) {
        // Before the first answer; after a failed one the error says why.
        return failed
          ? []
          : [h('div', { class: 'jd-Loading' }, 'Loading deployments…')];
      }
      const nodes = buildTree(clusters, nodepools, deployments);
      const parts: Child[] = [];
      if (nodes.length > 0) {
        parts.push(
          renderTree(nodes, {
            selectedId: store.selectedId,
            collapsed: this._collapsed,
            onSelect: id => store.select(id),
            onToggle: k => this._toggle(k),
            emptyLeaves: deployments.length > 0
          })
        );
      }
      if (deployments.length === 0) {
        parts.push(
          h(
            'div',
            { class: 'jd-Empty' },
            'No deployments yet. Run %%deploy in a notebook.'
          )
        );
      }
      return parts;
    });

    if (focusedId) {
      const row = this._tree.querySelector<HTMLElement>(
        `.jd-Deployment[data-deployment-id="${CSS.escape(focusedId)}"]`
      );
      if (row && row !== document.activeElement) {
        row.focus();
      }
    }
  }

  private _renderDetails(): void {
    const selected = this._store.selected;
    this._details.node.hidden = selected === null;
    if (selected) {
      this._details.update(
        selected,
        this._store.details,
        this._store.isBusy('deployment', selected.id)
      );
    }
  }

  private _renderModels(): void {
    const store = this._store;
    const models = store.models;
    const deployments = store.deployments ?? [];
    const busy = (models ?? [])
      .flatMap(m => m.versions.map(v => v.id))
      .filter(id => store.isBusy('version', id));
    const served = deployments.map(d => [d.id, d.version_id]);
    const failed =
      models === null &&
      (store.errors.length > 0 || store.daemonDown !== null);
    this._parts.update(this._models, 'models', [models, served, busy, failed], () => {
      if (models === null) {
        return failed
          ? []
          : [h('div', { class: 'jd-Loading' }, 'Loading models…')];
      }
      if (models.length === 0) {
        return [h('div', { class: 'jd-Empty' }, 'No models yet.')];
      }
      return [
        renderModels(models, {
          deployments,
          isBusy: id => store.isBusy('version', id),
          onDeleteVersion: (model, version) => {
            void (async () => {
              const ok = await confirmDelete(
                'Delete model version',
                `Delete version ${version.number} of ${model.url}? This cannot be undone.`
              );
              if (ok) {
                await store.deleteModelVersion(model, version.id);
              }
            })();
          }
        })
      ];
    });
  }

  private async _confirmDeleteDeployment(id: string): Promise<void> {
    const d = this._store.deployments?.find(x => x.id === id);
    const what = d
      ? `${id} (${[d.model_url, formatVersion(d.version_number)].filter(Boolean).join(' ')})`
      : id;
    const ok = await confirmDelete(
      'Delete deployment',
      `Delete deployment ${what}? Its replicas stop and the deployment is removed. The model and its versions stay.`
    );
    if (ok) {
      await this._store.deleteDeployment(id);
    }
  }

  private _onInsertPredict(deployment: IDeployment): void {
    const error = this._insertPredict(deployment);
    if (error) {
      this._store.reportError(error);
    }
  }

  private _toggle(key: string): void {
    if (!this._collapsed.delete(key)) {
      this._collapsed.add(key);
    }
    this._renderTree();
  }

  private readonly _store: DeployStore;
  private readonly _insertPredict: (deployment: IDeployment) => string | null;
  private readonly _details: DetailsView;
  private readonly _messages = h('div', {
    class: 'jd-Messages',
    'aria-live': 'polite'
  });
  private readonly _tree = h('section', {
    class: 'jd-TreeSection',
    'aria-label': 'Compute clusters, nodepools and deployments'
  });
  private readonly _models = h('section', {
    class: 'jd-ModelsSection',
    'aria-label': 'Models'
  });
  private readonly _collapsed = new Set<string>();
  private readonly _parts = new PartCache();
}

export namespace DeploySidebar {
  export interface IOptions {
    /** The data the panel shows, kept fresh. */
    store: DeployStore;
    /**
     * Insert a `%predict` cell for a deployment into the current notebook.
     * Returns an error message to show in the panel, or null.
     */
    insertPredict: (deployment: IDeployment) => string | null;
  }
}
