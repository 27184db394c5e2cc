import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';

import { DeployAPI } from './api';
import { insertPredictCell } from './predict';
import { DeploySidebar } from './sidebar';
import { DeployStore } from './store';

/** The sidebar's widget id; also the key ILayoutRestorer saves it under. */
const SIDEBAR_ID = 'jupyter-deploy-sidebar';

/**
 * The jupyter_deploy panel in JupyterLab's left sidebar: compute clusters,
 * nodepools and deployments with their states, the selected deployment's
 * details and logs, and the models with their versions.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyter-deploy:plugin',
  description: 'Manage jupyter_deploy deployments and models from the left sidebar.',
  autoStart: true,
  requires: [ILabShell],
  optional: [ILayoutRestorer, INotebookTracker],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null
  ): void => {
    const { serviceManager } = app;
    let sidebar: DeploySidebar | null = null;
    const store = new DeployStore({
      api: new DeployAPI(serviceManager.serverSettings),
      events: serviceManager.events,
      isVisible: () => sidebar?.isVisible ?? false
    });
    sidebar = new DeploySidebar({
      store,
      insertPredict: deployment =>
        insertPredictCell(notebooks, deployment, id => labShell.activateById(id))
    });
    sidebar.disposed.connect(() => store.dispose());

    labShell.add(sidebar, 'left', { rank: 600 });
    if (restorer) {
      restorer.add(sidebar, SIDEBAR_ID);
    }
  }
};

export default plugin;
