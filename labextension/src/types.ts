/**
 * The JSON shapes of the jupyter_deploy server extension's REST API
 * (`<baseUrl>/jupyter-deploy/api/...`). Kept in one place so that a change
 * on the Python side shows up as a compile error here, not as `undefined`
 * in the panel.
 */

/** Every state a deployment can be in, as the control plane names them. */
export type DeploymentState =
  | 'CREATING'
  | 'STARTING'
  | 'RUNNING'
  | 'UPDATING'
  | 'STOPPING'
  | 'STOPPED'
  | 'FAILED'
  | 'IDLE';

/** GET compute-clusters */
export interface IComputeCluster {
  id: string;
  user_id: string;
  cloud_provider: string;
  region: string;
  description: string;
}

/** GET nodepools */
export interface INodepool {
  id: string;
  compute_cluster_id: string;
  user_id: string;
  /** The instance type the nodepool runs on; its fields depend on the backend. */
  instance: { [key: string]: unknown } | null;
  min_instances: number;
  max_instances: number;
}

/** One replica of a deployment. */
export interface IReplica {
  id: string;
  state: string;
  address: string;
  version_id: string;
}

/** GET deployments (one item) */
export interface IDeployment {
  id: string;
  user_id: string;
  compute_cluster_id: string;
  nodepool_id: string;
  /** "user/app/models/model", which `%predict` accepts as the model. */
  model_url: string;
  model_id: string;
  version_id: string;
  version_number: number;
  /** A `DeploymentState`; typed as string so that a new state still renders. */
  state: string;
  reason: string;
  replicas: IReplica[];
  desired_replicas: number;
  endpoint: string;
  config: { [key: string]: unknown };
}

/** GET deployments/<id>: the list item plus its recent logs and metrics. */
export interface IDeploymentDetails extends IDeployment {
  logs?: string[];
  metrics?: { [key: string]: unknown } | null;
}

/** One version of a model. */
export interface IModelVersion {
  id: string;
  number: number;
  created_at: string;
  methods: string[];
}

/** GET models */
export interface IModel {
  id: string;
  user_id: string;
  app_id: string;
  url: string;
  visibility: string;
  versions: IModelVersion[];
}

/** The data of an event the server extension emits on jupyter_server's event bus. */
export interface IDeploymentEvent {
  deployment_id: string;
  state: string;
  action: string;
}

/** The schema id of those events. */
export const DEPLOYMENT_EVENT_SCHEMA =
  'https://jupyter-deploy.dev/events/deployments/v1';
