import { Event, ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { DeployAPI } from './api';
import {
  DEPLOYMENT_EVENT_SCHEMA,
  IComputeCluster,
  IDeployment,
  IDeploymentDetails,
  IModel,
  INodepool
} from './types';

/**
 * What the panel shows, fetched from the server extension and kept fresh.
 *
 * Two polls: deployments (and the selected one's details) every second,
 * because a state change must show within 2 s even when no event arrives;
 * the slower-changing catalog (clusters, nodepools, models) every 5 s. Both
 * back off on errors and stand by while the panel or the browser tab is
 * hidden. Events from jupyter_server's event bus refresh both at once.
 *
 * `null` lists mean "not loaded yet" (the panel shows a loading state);
 * errors are kept as text for the panel to show, never thrown at the user.
 */
export class DeployStore {
  constructor(options: DeployStore.IOptions) {
    this._api = options.api;
    this._events = options.events ?? null;
    this._isVisible = options.isVisible;

    // Stand by while the panel is collapsed (nobody looks) and, through
    // 'when-hidden', while the browser tab is in the background.
    const standby = (): boolean | Poll.Standby =>
      this._isVisible() ? 'when-hidden' : true;

    this._deploymentsPoll = new Poll({
      auto: true,
      factory: () => this._fetchDeployments(),
      frequency: { interval: 1000, backoff: true, max: 30_000 },
      name: 'jupyter-deploy:deployments',
      standby
    });
    this._catalogPoll = new Poll({
      auto: true,
      factory: () => this._fetchCatalog(),
      frequency: { interval: 5000, backoff: true, max: 60_000 },
      name: 'jupyter-deploy:catalog',
      standby
    });

    this._events?.stream.connect(this._onEvent, this);
  }

  /** Emitted after anything the panel shows has changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get clusters(): IComputeCluster[] | null {
    return this._clusters;
  }
  get nodepools(): INodepool[] | null {
    return this._nodepools;
  }
  get deployments(): IDeployment[] | null {
    return this._deployments;
  }
  get models(): IModel[] | null {
    return this._models;
  }

  /** The selected deployment's id, or null. */
  get selectedId(): string | null {
    return this._selectedId;
  }

  /** The selected deployment from the latest list, or null. */
  get selected(): IDeployment | null {
    const id = this._selectedId;
    return this._deployments?.find(d => d.id === id) ?? null;
  }

  /** Logs and metrics of the selected deployment, once fetched. */
  get details(): IDeploymentDetails | null {
    return this._details?.id === this._selectedId ? this._details : null;
  }

  /** Errors to show: failed refreshes first, then failed actions (not "no daemon": see daemonDown). */
  get errors(): string[] {
    const all = [
      this._deploymentsError,
      this._catalogError,
      ...this._actionErrors
    ].filter((e): e is string => !!e && e !== this._daemonDown);
    return Array.from(new Set(all));
  }

  /**
   * Why no daemon answers (the server's 503 message), or null while one does:
   * the panel says it once, with a Start button (`startDaemon`).
   */
  get daemonDown(): string | null {
    return this._daemonDown;
  }

  /** Start the background daemon (as the first `Client()` does), then fetch everything. */
  startDaemon(): Promise<void> {
    return this._act('daemon:', async () => {
      await this._api.startDaemon();
      this._daemonDown = null;
    });
  }

  /** Whether an action on this deployment, model version or the daemon is in flight. */
  isBusy(kind: 'deployment' | 'version' | 'daemon', id: string): boolean {
    return this._busy.has(`${kind}:${id}`);
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** Select a deployment (or none) and fetch its details at once. */
  select(id: string | null): void {
    if (id === this._selectedId) {
      return;
    }
    this._selectedId = id;
    this._details = null;
    this._changed.emit();
    if (id !== null) {
      void this._deploymentsPoll.refresh();
    }
  }

  /** Fetch everything now (after an action, on an event, when the panel opens). */
  refresh(): void {
    void this._deploymentsPoll.refresh();
    void this._catalogPoll.refresh();
  }

  /** Show an error that did not come from a request (e.g. no notebook open). */
  reportError(message: string): void {
    this._actionErrors = [
      ...this._actionErrors.filter(m => m !== message),
      message
    ];
    this._changed.emit();
  }

  /** Remove one error from the panel; refresh errors come back if they persist. */
  dismissError(message: string): void {
    this._actionErrors = this._actionErrors.filter(m => m !== message);
    if (this._deploymentsError === message) {
      this._deploymentsError = null;
    }
    if (this._catalogError === message) {
      this._catalogError = null;
    }
    this._changed.emit();
  }

  startDeployment(id: string): Promise<void> {
    return this._act(`deployment:${id}`, async () => {
      this._applyDeployment(await this._api.startDeployment(id));
    });
  }

  stopDeployment(id: string): Promise<void> {
    return this._act(`deployment:${id}`, async () => {
      this._applyDeployment(await this._api.stopDeployment(id));
    });
  }

  deleteDeployment(id: string): Promise<void> {
    return this._act(`deployment:${id}`, async () => {
      await this._api.deleteDeployment(id);
      this._bump('deployments');
      if (this._deployments) {
        this._deployments = this._deployments.filter(d => d.id !== id);
      }
      if (this._selectedId === id) {
        this._selectedId = null;
        this._details = null;
      }
    });
  }

  deleteModelVersion(model: IModel, versionId: string): Promise<void> {
    return this._act(`version:${versionId}`, async () => {
      await this._api.deleteModelVersion(model, versionId);
      this._bump('catalog');
      if (this._models) {
        this._models = this._models.map(m =>
          m.url === model.url
            ? { ...m, versions: m.versions.filter(v => v.id !== versionId) }
            : m
        );
      }
    });
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._events?.stream.disconnect(this._onEvent, this);
    this._deploymentsPoll.dispose();
    this._catalogPoll.dispose();
    Signal.clearData(this);
  }

  /**
   * Run an action, mark its target busy meanwhile, keep its error for the
   * panel, then refresh at once so the result shows without waiting a tick.
   */
  private async _act(key: string, action: () => Promise<void>): Promise<void> {
    this._actionErrors = [];
    this._busy.add(key);
    this._changed.emit();
    try {
      await action();
    } catch (error) {
      this._actionErrors = [messageOf(error)];
    } finally {
      this._busy.delete(key);
      this._changed.emit();
      this.refresh();
    }
  }

  /** Put a deployment the server just returned into the list. */
  private _applyDeployment(deployment: IDeployment | undefined): void {
    if (!deployment || typeof deployment.id !== 'string') {
      return;
    }
    this._bump('deployments');
    const list = this._deployments ?? [];
    const found = list.some(d => d.id === deployment.id);
    this._deployments = found
      ? list.map(d => (d.id === deployment.id ? deployment : d))
      : [...list, deployment];
    if (this._details?.id === deployment.id) {
      this._details = { ...this._details, ...deployment };
    }
  }

  /**
   * Count a change to a list. A poll request that was sent before the change
   * may answer after it; its answer is older and must not overwrite it.
   */
  private _bump(list: 'deployments' | 'catalog'): void {
    this._applied[list] = ++this._seq;
  }

  private async _fetchDeployments(): Promise<void> {
    const seq = ++this._seq;
    const selected = this._selectedId;
    const [list, details] = await Promise.all([
      settle(this._api.deployments()),
      selected !== null ? settle(this._api.deployment(selected)) : null
    ]);
    if (this._isDisposed || seq < this._applied.deployments) {
      return;
    }
    this._applied.deployments = seq;

    if ('error' in list) {
      this._deploymentsError = messageOf(list.error);
      this._daemonDown = isDaemonDown(list.error) ? this._deploymentsError : null;
      this._changed.emit();
      throw list.error; // so that the poll backs off
    }
    this._deploymentsError = null;
    this._daemonDown = null;
    this._deployments = list.value;

    if (selected !== null && selected === this._selectedId) {
      if (!list.value.some(d => d.id === selected)) {
        // Deleted elsewhere (another notebook, the CLI): nothing to show.
        this._selectedId = null;
        this._details = null;
      } else if (details && 'value' in details) {
        this._details = details.value;
      } else if (details && 'error' in details) {
        this._deploymentsError = messageOf(details.error);
      }
    }
    this._refreshCatalogIfStale(list.value);
    this._changed.emit();
  }

  private async _fetchCatalog(): Promise<void> {
    const seq = ++this._seq;
    const [clusters, nodepools, models] = await Promise.all([
      settle(this._api.computeClusters()),
      settle(this._api.nodepools()),
      settle(this._api.models())
    ]);
    if (this._isDisposed || seq < this._applied.catalog) {
      return;
    }
    this._applied.catalog = seq;

    // Keep whatever did load: a failing models endpoint should not hide the tree.
    if ('value' in clusters) {
      this._clusters = clusters.value;
    }
    if ('value' in nodepools) {
      this._nodepools = nodepools.value;
    }
    if ('value' in models) {
      this._models = models.value;
    }
    const failed = [clusters, nodepools, models].find(
      (r): r is { error: unknown } => 'error' in r
    );
    this._catalogError = failed ? messageOf(failed.error) : null;
    this._changed.emit();
    if (failed) {
      throw failed.error;
    }
  }

  /**
   * A deployment on a nodepool, cluster or model version the catalog does not
   * know yet was made since the last catalog fetch: fetch it now rather than
   * in up to 5 s. Asked once per set of unknowns, so it cannot loop.
   */
  private _refreshCatalogIfStale(deployments: IDeployment[]): void {
    if (!this._clusters || !this._nodepools || !this._models) {
      return;
    }
    const pools = new Set(
      this._nodepools.map(p => `${p.compute_cluster_id}/${p.id}`)
    );
    const versions = new Set(
      this._models.flatMap(m => m.versions.map(v => v.id))
    );
    const unknown = deployments
      .filter(
        d =>
          !pools.has(`${d.compute_cluster_id}/${d.nodepool_id}`) ||
          (d.version_id !== null && !versions.has(d.version_id))
      )
      .map(d => `${d.id}:${d.nodepool_id}:${d.version_id}`)
      .sort()
      .join(',');
    if (unknown && unknown !== this._unknownAsked) {
      void this._catalogPoll.refresh();
    }
    this._unknownAsked = unknown;
  }

  private _onEvent(_: Event.IManager, event: Event.Emission): void {
    if (event.schema_id !== DEPLOYMENT_EVENT_SCHEMA) {
      return;
    }
    // jupyter_server sends an event's data fields beside `schema_id`.
    const id = event['deployment_id'];
    const state = event['state'];
    if (typeof id === 'string' && typeof state === 'string') {
      const current = this._deployments?.find(d => d.id === id);
      if (current && current.state !== state) {
        // Show the new state now; the refresh below brings the rest.
        this._applyDeployment({ ...current, state });
        this._changed.emit();
      }
    }
    this.refresh();
  }

  private readonly _api: DeployAPI;
  private readonly _events: Event.IManager | null;
  private readonly _isVisible: () => boolean;
  private readonly _deploymentsPoll: Poll;
  private readonly _catalogPoll: Poll;
  private readonly _changed = new Signal<this, void>(this);
  private readonly _busy = new Set<string>();
  private _clusters: IComputeCluster[] | null = null;
  private _nodepools: INodepool[] | null = null;
  private _deployments: IDeployment[] | null = null;
  private _models: IModel[] | null = null;
  private _selectedId: string | null = null;
  private _details: IDeploymentDetails | null = null;
  private _deploymentsError: string | null = null;
  private _daemonDown: string | null = null;
  private _catalogError: string | null = null;
  private _actionErrors: string[] = [];
  private _seq = 0;
  private _applied = { deployments: 0, catalog: 0 };
  private _unknownAsked = '';
  private _isDisposed = false;
}

export namespace DeployStore {
  export interface IOptions {
    /** The REST client. */
    api: DeployAPI;
    /** jupyter_server's event bus (`app.serviceManager.events`), when there is one. */
    events?: Event.IManager | null;
    /** Whether the panel is visible; the polls stand by while it is not. */
    isVisible: () => boolean;
  }
}

/** The text to show for a failed request: the server's message when it sent one. */
export function messageOf(error: unknown): string {
  if (error instanceof ServerConnection.NetworkError) {
    return `Cannot reach the Jupyter server: ${error.message}`;
  }
  if (error instanceof Error) {
    return error.message;
  }
  return String(error);
}

/** Whether a failed request says no daemon answers (the server extension's 503). */
function isDaemonDown(error: unknown): boolean {
  return (
    error instanceof ServerConnection.ResponseError &&
    error.response.status === 503
  );
}

type Settled<T> = { value: T } | { error: unknown };

/** A promise's outcome as a value: several requests run together, each may fail alone. */
async function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  try {
    return { value: await promise };
  } catch (error) {
    return { error };
  }
}
