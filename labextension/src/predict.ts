import { NotebookActions, INotebookTracker } from '@jupyterlab/notebook';

import { IDeployment } from './types';

/**
 * The `%predict` line for a deployment. The model is named by its URL
 * (`user/app/models/model`, which the magic accepts) and the deployment by
 * id, so the cell calls exactly what the panel showed; `"hello"` marks where
 * the input goes.
 */
export function predictSource(deployment: IDeployment): string {
  return `%predict ${deployment.model_url} --deployment-id ${deployment.id} "hello"`;
}

/**
 * Insert a `%predict` cell below the active cell of the current notebook.
 *
 * @returns an error message for the panel when there is no notebook to
 *   insert into, else null
 */
export function insertPredictCell(
  tracker: INotebookTracker | null,
  deployment: IDeployment,
  activate: (id: string) => void
): string | null {
  const panel = tracker?.currentWidget ?? null;
  if (!panel) {
    return 'Open a notebook first: the %predict cell goes below its active cell.';
  }
  const notebook = panel.content;
  NotebookActions.insertBelow(notebook);
  // The new cell takes the notebook's default cell type, which a user may
  // have set to Markdown.
  if (notebook.activeCell?.model.type !== 'code') {
    NotebookActions.changeCellType(notebook, 'code');
  }
  const cell = notebook.activeCell;
  if (!cell) {
    return 'Could not insert a cell into the notebook.';
  }
  cell.model.sharedModel.setSource(predictSource(deployment));
  // Show the notebook with its new cell, ready for Shift+Enter.
  activate(panel.id);
  Promise.resolve(notebook.scrollToCell(cell)).catch(() => undefined);
  return null;
}
