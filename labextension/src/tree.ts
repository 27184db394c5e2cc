import { caretDownIcon, caretRightIcon } from '@jupyterlab/ui-components';

import { stateBadge } from './badge';
import { h } from './dom';
import { isServing } from './states';
import { formatInstance, formatVersion } from './format';
import { IComputeCluster, IDeployment, INodepool } from './types';

/** A nodepool with its deployments; `known` is false until the catalog lists it. */
export interface INodepoolNode {
  clusterId: string;
  id: string;
  nodepool: INodepool | null;
  deployments: IDeployment[];
}

/** A compute cluster with its nodepools. */
export interface IClusterNode {
  id: string;
  cluster: IComputeCluster | null;
  nodepools: INodepoolNode[];
}

/**
 * Group deployments under their nodepool and cluster.
 *
 * Deployments load every second and the catalog every five, so a new
 * deployment may name a nodepool or cluster not listed yet; it still gets a
 * node (with the id it names), never disappears from the tree.
 */
export function buildTree(
  clusters: IComputeCluster[],
  nodepools: INodepool[],
  deployments: IDeployment[]
): IClusterNode[] {
  const byCluster = new Map<string, IClusterNode>();
  const clusterNode = (id: string): IClusterNode => {
    let node = byCluster.get(id);
    if (!node) {
      node = { id, cluster: null, nodepools: [] };
      byCluster.set(id, node);
    }
    return node;
  };
  const poolNode = (clusterId: string, id: string): INodepoolNode => {
    const cluster = clusterNode(clusterId);
    let node = cluster.nodepools.find(p => p.id === id);
    if (!node) {
      node = { clusterId, id, nodepool: null, deployments: [] };
      cluster.nodepools.push(node);
    }
    return node;
  };
  for (const cluster of clusters) {
    clusterNode(cluster.id).cluster = cluster;
  }
  for (const nodepool of nodepools) {
    poolNode(nodepool.compute_cluster_id, nodepool.id).nodepool = nodepool;
  }
  for (const deployment of deployments) {
    poolNode(
      deployment.compute_cluster_id,
      deployment.nodepool_id
    ).deployments.push(deployment);
  }
  const nodes = Array.from(byCluster.values());
  for (const node of nodes) {
    for (const pool of node.nodepools) {
      pool.deployments.sort((a, b) => a.id.localeCompare(b.id));
    }
    node.nodepools.sort((a, b) => a.id.localeCompare(b.id));
  }
  return nodes.sort((a, b) => a.id.localeCompare(b.id));
}

/** What the tree needs besides the data: selection, folding, and callbacks. */
export interface ITreeOptions {
  selectedId: string | null;
  /** Keys of folded nodes: `cluster:<id>` or `nodepool:<cluster>/<id>`. */
  collapsed: ReadonlySet<string>;
  onSelect: (id: string) => void;
  onToggle: (key: string) => void;
  /**
   * Say "No deployments" under an empty nodepool. Off when there are none at
   * all: the panel says so once, below the tree.
   */
  emptyLeaves?: boolean;
}

/** The tree as DOM: clusters > nodepools > deployment rows. */
export function renderTree(
  nodes: IClusterNode[],
  options: ITreeOptions
): HTMLElement {
  return h(
    'div',
    { class: 'jd-Tree', role: 'tree', 'aria-label': 'Deployments' },
    ...nodes.map(node => renderCluster(node, options))
  );
}

/** A Ray cluster's node count ("2 nodes"); '' for local (this host). */
function rayNodes(cluster: IComputeCluster): string {
  const n = cluster.cloud_provider === 'ray' ? (cluster.nodes || []).length : 0;
  return n ? `${n} node${n === 1 ? '' : 's'}` : '';
}

function renderCluster(node: IClusterNode, options: ITreeOptions): HTMLElement {
  const key = `cluster:${node.id}`;
  const open = !options.collapsed.has(key);
  const where = node.cluster
    ? [node.cluster.cloud_provider, node.cluster.region, rayNodes(node.cluster)]
        .filter(Boolean)
        .join(' / ')
    : '';
  return h(
    'div',
    {
      class: 'jd-Cluster',
      'data-cluster-id': node.id,
      role: 'treeitem',
      'aria-expanded': String(open)
    },
    nodeHeader(
      key,
      open,
      options,
      [
        h('span', { class: 'jd-NodeKind' }, 'cluster'),
        h('span', { class: 'jd-NodeName' }, node.id),
        where && h('span', { class: 'jd-Muted' }, where)
      ],
      node.cluster?.description
    ),
    open &&
      childGroup(node.nodepools, pool => renderNodepool(pool, options), 'No nodepools')
  );
}

function renderNodepool(
  node: INodepoolNode,
  options: ITreeOptions
): HTMLElement {
  const key = `nodepool:${node.clusterId}/${node.id}`;
  const open = !options.collapsed.has(key);
  const pool = node.nodepool;
  const instance = pool ? formatInstance(pool.instance) : '';
  const size =
    pool && pool.max_instances !== null
      ? `${pool.min_instances ?? 0}–${pool.max_instances} instances`
      : '';
  return h(
    'div',
    {
      class: 'jd-Nodepool',
      'data-nodepool-id': node.id,
      'data-cluster-id': node.clusterId,
      role: 'treeitem',
      'aria-expanded': String(open)
    },
    nodeHeader(
      key,
      open,
      options,
      [
        h('span', { class: 'jd-NodeKind' }, 'nodepool'),
        h('span', { class: 'jd-NodeName' }, node.id),
        instance && h('span', { class: 'jd-Muted' }, instance)
      ],
      [instance, size].filter(Boolean).join(', ')
    ),
    open &&
      childGroup(
        node.deployments,
        d => renderDeployment(d, options),
        options.emptyLeaves === false ? null : 'No deployments'
      )
  );
}

/** An open node's children, or a muted line (unless `empty` is null) saying there are none. */
function childGroup<T>(
  items: T[],
  render: (item: T) => HTMLElement,
  empty: string | null
): HTMLElement {
  return h(
    'div',
    { class: 'jd-Children', role: 'group' },
    ...(items.length > 0
      ? items.map(render)
      : empty === null
        ? []
        : [h('div', { class: 'jd-Muted jd-Leaf' }, empty)])
  );
}

/** A foldable node's header line: caret, then the given parts. */
function nodeHeader(
  key: string,
  open: boolean,
  options: ITreeOptions,
  parts: (HTMLElement | '' | false | undefined)[],
  title?: string
): HTMLElement {
  const caret = (open ? caretDownIcon : caretRightIcon).element({
    tag: 'span',
    className: 'jd-Caret'
  });
  const toggle = (): void => options.onToggle(key);
  return h(
    'div',
    {
      class: 'jd-NodeHeader',
      title: title || undefined,
      tabindex: 0,
      onclick: toggle,
      onkeydown: (event: KeyboardEvent) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          toggle();
        }
      }
    },
    caret,
    ...parts
  );
}

function renderDeployment(d: IDeployment, options: ITreeOptions): HTMLElement {
  const selected = d.id === options.selectedId;
  const ready = d.replicas.filter(r => isServing(r.state)).length;
  const select = (): void => options.onSelect(d.id);
  const what = [d.model_url || d.model_id, formatVersion(d.version_number)]
    .filter(Boolean)
    .join(' ');
  return h(
    'div',
    {
      class: `jd-Deployment${selected ? ' jd-mod-selected' : ''}`,
      'data-deployment-id': d.id,
      'data-state': d.state,
      role: 'treeitem',
      'aria-selected': String(selected),
      tabindex: 0,
      title: d.reason ? `${what}: ${d.reason}` : what,
      onclick: select,
      onkeydown: (event: KeyboardEvent) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          select();
        }
      }
    },
    stateBadge(d.state),
    h('span', { class: 'jd-DeploymentName' }, d.id),
    h(
      'span',
      { class: 'jd-Muted jd-DeploymentModel' },
      [d.model_id, formatVersion(d.version_number)].filter(Boolean).join(' ')
    ),
    typeof d.desired_replicas === 'number'
      ? h(
          'span',
          {
            class: 'jd-Muted jd-ReplicaCount',
            title: 'ready replicas / wanted'
          },
          `${ready}/${d.desired_replicas}`
        )
      : h(
          'span',
          { class: 'jd-Muted jd-ReplicaCount', title: 'ready replicas' },
          `${ready}`
        )
  );
}
