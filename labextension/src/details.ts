import { stateBadge } from './badge';
import { Child, h, replaceChildren } from './dom';
import { Row, summarizeConfig, summarizeMetrics } from './summary';
import { canStart, canStop } from './states';
import { IDeployment, IDeploymentDetails } from './types';

/** What the details view does on its buttons. */
export interface IDetailsActions {
  start(id: string): void;
  stop(id: string): void;
  remove(id: string): void;
  insertPredict(deployment: IDeployment): void;
}

/**
 * The selected deployment: its facts, settings, metrics, buttons and log tail.
 *
 * Built once and updated in place, because it refreshes every second: the
 * buttons stay the same elements (a click is never lost to a re-render) and
 * the log keeps its scroll position unless it was following the end.
 */
export class DetailsView {
  constructor(private readonly _actions: IDetailsActions) {
    this._start = button('jd-StartButton', 'Start', 'Start the deployment\'s replicas', () =>
      this._run(d => this._actions.start(d.id))
    );
    this._stop = button('jd-StopButton', 'Stop', 'Stop its replicas (the deployment stays)', () =>
      this._run(d => this._actions.stop(d.id))
    );
    this._delete = button('jd-DeleteButton', 'Delete', 'Delete the deployment', () =>
      this._run(d => this._actions.remove(d.id))
    );
    this._predict = button(
      'jd-InsertPredictButton',
      'Insert %predict',
      'Insert a %predict cell for this deployment below the active cell of the current notebook',
      () => this._run(d => this._actions.insertPredict(d))
    );
    this._delete.classList.add('jd-mod-danger');
    this.node = h(
      'section',
      { class: 'jd-Details', 'aria-label': 'Deployment details' },
      this._title,
      this._info,
      h('div', { class: 'jd-Actions' }, this._start, this._stop, this._delete, this._predict),
      this._metrics,
      h('div', { class: 'jd-SubHeading' }, 'Logs'),
      this._logs
    );
  }

  /** The view's root element (`.jd-Details`). */
  readonly node: HTMLElement;

  /**
   * Show a deployment.
   *
   * @param details - its logs and metrics, or null while they load
   * @param busy - an action on it is in flight: its buttons are disabled
   */
  update(deployment: IDeployment, details: IDeploymentDetails | null, busy: boolean): void {
    this._deployment = deployment;
    // Prefer the list's item for the facts: the list is newer when an action
    // or an event updated it before the details were fetched again.
    const d = deployment;
    this.node.setAttribute('data-deployment-id', d.id);

    this._setIfChanged(this._title, 'title', [d.id, d.state], () => [
      h('span', { class: 'jd-DetailsName' }, d.id),
      stateBadge(d.state, 'jd-DetailsState')
    ]);
    this._setIfChanged(this._info, 'info', d, () =>
      [rowsToDom([...facts(d), ...summarizeConfig(d.config ?? {})])]
    );
    const metrics = summarizeMetrics(details?.metrics);
    this._setIfChanged(this._metrics, 'metrics', metrics, () =>
      metrics.length > 0
        ? [h('div', { class: 'jd-SubHeading' }, 'Metrics'), rowsToDom(metrics)]
        : []
    );

    this._start.disabled = busy || !canStart(d.state);
    this._stop.disabled = busy || !canStop(d.state);
    this._delete.disabled = busy;
    this._predict.disabled = false;
    this.node.classList.toggle('jd-mod-busy', busy);

    this._updateLogs(details);
  }

  private _updateLogs(details: IDeploymentDetails | null): void {
    const pre = this._logs;
    if (!details) {
      if (!pre.querySelector('.jd-Loading')) {
        replaceChildren(pre, h('span', { class: 'jd-Loading' }, 'Loading logs…'));
        this._keys.delete('logs');
      }
      return;
    }
    const lines = details.logs ?? [];
    const text = lines.length > 0 ? lines.join('\n') : 'No log lines yet.';
    if (this._keys.get('logs') === text) {
      return;
    }
    this._keys.set('logs', text);
    // Follow the end unless the reader scrolled up to read something.
    const following = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8 || !pre.textContent;
    pre.classList.toggle('jd-mod-empty', lines.length === 0);
    pre.textContent = text;
    if (following) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  /** Rebuild one part only when what it shows changed. */
  private _setIfChanged(
    node: HTMLElement,
    name: string,
    data: unknown,
    build: () => Child[]
  ): void {
    const key = JSON.stringify(data);
    if (this._keys.get(name) !== key) {
      this._keys.set(name, key);
      replaceChildren(node, ...build());
    }
  }

  private _run(action: (d: IDeployment) => void): void {
    if (this._deployment) {
      action(this._deployment);
    }
  }

  private _deployment: IDeployment | null = null;
  private readonly _keys = new Map<string, string>();
  private readonly _title = h('div', { class: 'jd-DetailsTitle' });
  private readonly _info = h('div', { class: 'jd-Info' });
  private readonly _metrics = h('div', { class: 'jd-Metrics' });
  private readonly _logs = h('pre', { class: 'jd-Logs', 'aria-label': 'Log tail' });
  private readonly _start: HTMLButtonElement;
  private readonly _stop: HTMLButtonElement;
  private readonly _delete: HTMLButtonElement;
  private readonly _predict: HTMLButtonElement;
}

/** The facts every deployment has. */
function facts(d: IDeployment): Row[] {
  const rows: Row[] = [
    ['Model', d.model_url],
    ['Version', `${d.version_number} (${d.version_id})`],
    ['Where', `${d.compute_cluster_id} / ${d.nodepool_id}`],
    ['Replicas', replicaSummary(d)],
    ['Endpoint', d.endpoint || '—']
  ];
  if (d.reason) {
    rows.push(['Reason', d.reason]);
  }
  return rows;
}

function replicaSummary(d: IDeployment): string {
  const head = `${d.replicas.length} of ${d.desired_replicas} wanted`;
  const each = d.replicas.map(r =>
    [r.state, r.address, r.version_id !== d.version_id ? `(version ${r.version_id})` : '']
      .filter(Boolean)
      .join(' ')
  );
  return each.length > 0 ? `${head}: ${each.join('; ')}` : head;
}

function rowsToDom(rows: Row[]): HTMLElement {
  return h(
    'dl',
    { class: 'jd-Rows' },
    ...rows.flatMap(([label, value]) => [
      h('dt', {}, label),
      h('dd', { title: value }, value)
    ])
  );
}

function button(
  className: string,
  label: string,
  title: string,
  onClick: () => void
): HTMLButtonElement {
  return h('button', { class: `jd-Button ${className}`, type: 'button', title, onclick: onClick }, label);
}
