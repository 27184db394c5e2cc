/**
 * What each deployment state allows. The server decides for real; this only
 * keeps the panel from offering a button that cannot do anything.
 */

/** A replica that answers requests (the scheduler calls it READY). */
export function isServing(replicaState: string): boolean {
  return replicaState === 'READY' || replicaState === 'RUNNING';
}

/** Start makes sense unless the deployment is already up or on its way up. */
export function canStart(state: string): boolean {
  return !['CREATING', 'STARTING', 'RUNNING', 'UPDATING'].includes(state);
}

/** Stop makes sense unless it is already stopped or stopping. */
export function canStop(state: string): boolean {
  return !['STOPPED', 'STOPPING'].includes(state);
}
