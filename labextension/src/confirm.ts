import { Dialog, showDialog } from '@jupyterlab/apputils';

/**
 * Ask before something that cannot be undone. JupyterLab's own dialog, so
 * it looks and behaves (Escape, focus) like the rest of the application.
 *
 * @returns whether the user pressed the destructive button
 */
export async function confirmDelete(title: string, body: string): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })],
    defaultButton: 0
  });
  return result.button.accept;
}
