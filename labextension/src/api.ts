import { ServerConnection } from '@jupyterlab/services';

import { requestAPI } from './request';
import {
  IComputeCluster,
  IDeployment,
  IDeploymentDetails,
  IModel,
  INodepool
} from './types';

/**
 * The REST calls the panel makes, one method per endpoint, so that no other
 * module builds a URL. Ids are URL-encoded: they come from the server, but a
 * model id with a character such as `#` must not change the route.
 */
export class DeployAPI {
  constructor(private readonly _settings: ServerConnection.ISettings) {}

  computeClusters(): Promise<IComputeCluster[]> {
    return this._get<IComputeCluster[]>('compute-clusters');
  }

  nodepools(): Promise<INodepool[]> {
    return this._get<INodepool[]>('nodepools');
  }

  deployments(): Promise<IDeployment[]> {
    return this._get<IDeployment[]>('deployments');
  }

  deployment(id: string): Promise<IDeploymentDetails> {
    return this._get<IDeploymentDetails>(`deployments/${enc(id)}`);
  }

  /** Start the background daemon, as the first `Client()` in a notebook does. */
  startDaemon(): Promise<{ address: string; user_id: string }> {
    return this._post<{ address: string; user_id: string }>('daemon/start');
  }

  models(): Promise<IModel[]> {
    return this._get<IModel[]>('models');
  }

  startDeployment(id: string): Promise<IDeployment> {
    return this._post<IDeployment>(`deployments/${enc(id)}/start`);
  }

  stopDeployment(id: string): Promise<IDeployment> {
    return this._post<IDeployment>(`deployments/${enc(id)}/stop`);
  }

  async deleteDeployment(id: string): Promise<void> {
    await requestAPI<void>(`deployments/${enc(id)}`, this._settings, {
      method: 'DELETE'
    });
  }

  async deleteModelVersion(model: IModel, versionId: string): Promise<void> {
    const path = [
      'models',
      enc(model.user_id),
      enc(model.app_id),
      enc(model.id),
      'versions',
      enc(versionId)
    ].join('/');
    await requestAPI<void>(path, this._settings, { method: 'DELETE' });
  }

  private async _get<T>(endPoint: string): Promise<T> {
    // `cache: 'no-store'`: the panel polls every second and must see the
    // state the server has now, never a cached answer.
    return requestAPI<T>(endPoint, this._settings, {
      method: 'GET',
      cache: 'no-store'
    });
  }

  private _post<T>(endPoint: string): Promise<T> {
    return requestAPI<T>(endPoint, this._settings, {
      method: 'POST',
      body: '{}'
    });
  }
}

function enc(part: string): string {
  return encodeURIComponent(part);
}
