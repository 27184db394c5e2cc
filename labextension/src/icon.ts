import { LabIcon } from '@jupyterlab/ui-components';

/**
 * The sidebar tab's icon: a box going up onto a server rack. `jp-icon3`
 * lets JupyterLab recolor it for the light and dark themes and for the
 * selected tab.
 */
const svgstr = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 1.5l-5 5h3.2v6.3h3.6V6.5H17z"/>
    <path d="M3 14.5h18c.55 0 1 .45 1 1v2.5c0 .55-.45 1-1 1H3c-.55 0-1-.45-1-1v-2.5c0-.55.45-1 1-1zm2 1.6a1.15 1.15 0 100 2.3 1.15 1.15 0 000-2.3zM9 16.4v1.7h10v-1.7z"/>
    <path d="M3 20h18c.55 0 1 .45 1 1v1.5c0 .28-.22.5-.5.5h-19a.5.5 0 01-.5-.5V21c0-.55.45-1 1-1z"/>
  </g>
</svg>`;

export const deployIcon = new LabIcon({ name: 'jupyter-deploy:icon', svgstr });
