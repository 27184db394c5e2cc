import { h } from './dom';

/**
 * A colored label for a deployment state. Its color comes from CSS keyed on
 * `data-state`, so the theme decides it; the text is the state itself, so it
 * reads without color too.
 *
 * @param className - `jd-StateBadge` in tree rows (the browser test looks for
 *   it there), another class elsewhere so that selector stays unambiguous
 */
export function stateBadge(
  state: string,
  className = 'jd-StateBadge'
): HTMLSpanElement {
  return h(
    'span',
    { class: `jd-Badge ${className}`, 'data-state': state, title: describe(state) },
    state
  );
}

/** What a state means, for the badge's tooltip. */
function describe(state: string): string {
  switch (state) {
    case 'CREATING':
      return 'Being created';
    case 'STARTING':
      return 'Replicas are starting';
    case 'RUNNING':
      return 'Serving requests';
    case 'UPDATING':
      return 'Switching to another version';
    case 'STOPPING':
      return 'Replicas are stopping';
    case 'STOPPED':
      return 'Stopped; start it to serve again';
    case 'FAILED':
      return 'Failed; see the reason and the logs';
    case 'IDLE':
      return 'Idle: no replica is running';
    default:
      return state;
  }
}
