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
  /** ray: the Ray cluster's GCS address ('' or absent for local). */
  ray_address?: string;
  /** Where replicas run: Ray's nodes for ray, this host for local. */
  nodes?: IClusterHost[];
}

/** One node of a compute cluster, as its backend reports it. */
export interface IClusterHost {
  node_id: string;
  labels: { [key: string]: string };
  cpus: number;
  memory: number;
  gpus: string[];
}

/** GET nodepools */
export interface INodepool {
  id: string;
  compute_cluster_id: string;
  user_id: string;
  /** The instance type the nodepool runs on; its fields depend on the backend. */
  instance: { [key: string]: unknown } | null;
  min_instances: number | null;
  max_instances: number | null;
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
  /** Null while the control plane has not settled on a version yet. */
  version_id: string | null;
  version_number: number | null;
  /** A `DeploymentState`; typed as string so that a new state still renders. */
  state: string;
  reason: string;
  replicas: IReplica[];
  /** Null when the config does not say (the server's default applies). */
  desired_replicas: number | null;
  /** The address of a READY replica; null or empty while none serves. */
  endpoint: string | null;
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
  /** An ISO timestamp (or seconds since the epoch). */
  created_at: string | number;
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
