import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/**
 * Call the jupyter_deploy server extension.
 *
 * The extension template's `requestAPI`: `ServerConnection.makeRequest` adds
 * the token and the XSRF header that Jupyter's authentication requires. The
 * settings are passed in (from `app.serviceManager.serverSettings`) rather than
 * made here, so the panel talks to the same server as the rest of JupyterLab.
 *
 * @param endPoint - the path under `jupyter-deploy/api/`, e.g. `deployments/abc/stop`
 * @returns the parsed JSON body, or `undefined` for an empty body (a 204)
 * @throws ServerConnection.NetworkError when the server cannot be reached
 * @throws ServerConnection.ResponseError on a non-2xx answer; its message is
 *   the server's `{"message": ...}`
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<T> {
  const url = URLExt.join(
    serverSettings.baseUrl,
    'jupyter-deploy',
    'api',
    endPoint
  );

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, serverSettings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }

  const text = await response.text();
  let data: unknown = undefined;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // Not JSON: an HTML error page from Tornado (e.g. the server extension
      // is not enabled, so the route does not exist). Handled below.
      data = undefined;
    }
  }

  if (!response.ok) {
    throw new ServerConnection.ResponseError(
      response,
      errorMessage(response, data)
    );
  }
  return data as T;
}

/** The message to show for a failed call: the server's own when it gave one. */
function errorMessage(response: Response, data: unknown): string {
  if (
    data !== null &&
    typeof data === 'object' &&
    typeof (data as { message?: unknown }).message === 'string' &&
    (data as { message: string }).message.length > 0
  ) {
    return (data as { message: string }).message;
  }
  const status = `${response.status} ${response.statusText}`.trim();
  if (response.status === 404) {
    return `${status}: is the jupyter_deploy server extension enabled?`;
  }
  return status;
}
