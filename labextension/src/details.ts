import { stateBadge } from './badge';
import { h, PartCache, replaceChildren } from './dom';
import { formatVersion, shortId } from './format';
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
    this._start = button(
      'jd-StartButton',
      'Start',
      "Start the deployment's replicas",
      () => this._run(d => this._actions.start(d.id))
    );
    this._stop = button(
      'jd-StopButton',
      'Stop',
      'Stop its replicas (the deployment stays)',
      () => this._run(d => this._actions.stop(d.id))
    );
    this._delete = button(
      'jd-DeleteButton',
      'Delete',
      'Delete the deployment',
      () => this._run(d => this._actions.remove(d.id))
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
      h(
        'div',
        { class: 'jd-Actions' },
        this._start,
        this._stop,
        this._delete,
        this._predict
      ),
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
  update(
    deployment: IDeployment,
    details: IDeploymentDetails | null,
    busy: boolean
  ): void {
    this._deployment = deployment;
    // Prefer the list's item for the facts: the list is newer when an action
    // or an event updated it before the details were fetched again.
    const d = deployment;
    this.node.setAttribute('data-deployment-id', d.id);

    this._parts.update(this._title, 'title', [d.id, d.state], () => [
      h('span', { class: 'jd-DetailsName' }, d.id),
      stateBadge(d.state, 'jd-DetailsState')
    ]);
    this._parts.update(this._info, 'info', d, () => [
      rowsToDom([...facts(d), ...summarizeConfig(d.config ?? {})])
    ]);
    const metrics = summarizeMetrics(details?.metrics);
    this._parts.update(this._metrics, 'metrics', metrics, () =>
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
        replaceChildren(
          pre,
          h('span', { class: 'jd-Loading' }, 'Loading logs…')
        );
        this._logsText = null;
      }
      return;
    }
    const lines = details.logs ?? [];
    const text = lines.length > 0 ? lines.join('\n') : 'No log lines yet.';
    if (this._logsText === text) {
      return;
    }
    this._logsText = text;
    // Follow the end unless the reader scrolled up to read something.
    const following =
      pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8 ||
      !pre.textContent;
    pre.classList.toggle('jd-mod-empty', lines.length === 0);
    pre.textContent = text;
    if (following) {
      pre.scrollTop = pre.scrollHeight;
    }
  }

  private _run(action: (d: IDeployment) => void): void {
    if (this._deployment) {
      action(this._deployment);
    }
  }

  private _deployment: IDeployment | null = null;
  private readonly _parts = new PartCache();
  private _logsText: string | null = null;
  private readonly _title = h('div', { class: 'jd-DetailsTitle' });
  private readonly _info = h('div', { class: 'jd-Info' });
  private readonly _metrics = h('div', { class: 'jd-Metrics' });
  private readonly _logs = h('pre', {
    class: 'jd-Logs',
    'aria-label': 'Log tail'
  });
  private readonly _start: HTMLButtonElement;
  private readonly _stop: HTMLButtonElement;
  private readonly _delete: HTMLButtonElement;
  private readonly _predict: HTMLButtonElement;
}

/** The facts every deployment has. */
function facts(d: IDeployment): Row[] {
  const rows: Row[] = [
    ['Model', d.model_url],
    d.version_id
      ? [
          'Version',
          `${formatVersion(d.version_number)} (${shortId(d.version_id)})`,
          d.version_id
        ]
      : ['Version', '—'],
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
  const head =
    typeof d.desired_replicas === 'number'
      ? `${d.replicas.length} of ${d.desired_replicas}`
      : `${d.replicas.length}`;
  const each = d.replicas.map(r =>
    [
      r.state,
      r.address,
      r.version_id && r.version_id !== d.version_id
        ? `(version ${r.version_id})`
        : ''
    ]
      .filter(Boolean)
      .join(' ')
  );
  // One line per replica (the dd keeps line breaks).
  return [head, ...each].join('\n');
}

function rowsToDom(rows: Row[]): HTMLElement {
  return h(
    'dl',
    { class: 'jd-Rows' },
    ...rows.flatMap(([label, value, title]) => [
      h('dt', {}, label),
      h('dd', { title: title ?? value }, value)
    ])
  );
}

function button(
  className: string,
  label: string,
  title: string,
  onClick: () => void
): HTMLButtonElement {
  return h(
    'button',
    {
      class: `jd-Button ${className}`,
      type: 'button',
      title,
      onclick: onClick
    },
    label
  );
}
