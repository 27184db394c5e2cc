import { h } from './dom';
import { formatDate } from './format';
import { IDeployment, IModel, IModelVersion } from './types';

/** What the models list needs besides the models. */
export interface IModelsOptions {
  /** To mark versions that a deployment serves. */
  deployments: IDeployment[];
  isBusy: (versionId: string) => boolean;
  onDeleteVersion: (model: IModel, version: IModelVersion) => void;
}

/** The Models section: each model with its versions, newest first. */
export function renderModels(models: IModel[], options: IModelsOptions): HTMLElement {
  const sorted = [...models].sort((a, b) => a.url.localeCompare(b.url));
  return h('ul', { class: 'jd-Models', 'aria-label': 'Models' }, ...sorted.map(m => renderModel(m, options)));
}

function renderModel(model: IModel, options: IModelsOptions): HTMLElement {
  const versions = [...model.versions].sort((a, b) => b.number - a.number);
  return h(
    'li',
    { class: 'jd-Model', 'data-model-url': model.url },
    h(
      'div',
      { class: 'jd-ModelHeader', title: model.url },
      h('span', { class: 'jd-NodeName' }, model.id),
      h('span', { class: 'jd-Muted jd-ModelUrl' }, model.url),
      model.visibility && model.visibility !== 'private'
        ? h('span', { class: 'jd-Tag' }, model.visibility)
        : null
    ),
    versions.length > 0
      ? h('ul', { class: 'jd-ModelVersions' }, ...versions.map(v => renderVersion(model, v, options)))
      : h('div', { class: 'jd-Muted jd-Leaf' }, 'No versions')
  );
}

function renderVersion(model: IModel, version: IModelVersion, options: IModelsOptions): HTMLElement {
  const serving = options.deployments.filter(d => d.version_id === version.id).map(d => d.id);
  const busy = options.isBusy(version.id);
  return h(
    'li',
    {
      class: 'jd-ModelVersion',
      'data-version-id': version.id,
      title: `version ${version.number} (${version.id}), created ${version.created_at}`
    },
    h('span', { class: 'jd-VersionNumber' }, `v${version.number}`),
    h('span', { class: 'jd-Muted' }, formatDate(version.created_at)),
    version.methods.length > 0
      ? h('span', { class: 'jd-Methods', title: 'methods' }, version.methods.join(', '))
      : null,
    serving.length > 0
      ? h('span', { class: 'jd-Tag', title: `served by ${serving.join(', ')}` }, 'deployed')
      : null,
    h(
      'button',
      {
        class: 'jd-IconButton jd-DeleteVersionButton',
        type: 'button',
        title: `Delete version ${version.number} of ${model.url}`,
        'aria-label': `Delete version ${version.number}`,
        disabled: busy,
        onclick: () => options.onDeleteVersion(model, version)
      },
      '✕'
    )
  );
}
