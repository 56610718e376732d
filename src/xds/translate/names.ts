/** Resource names, following Istio's conventions so its docs and habits carry over. */

export { clusterName } from '../../model/routing/names.js';

export function sidecarListenerName(bind: string, port: number): string {
  return `${bind}_${port}`;
}

export function sidecarRouteName(port: number): string {
  return String(port);
}

/** The name a proxyless gRPC client asks for: the authority of `xds:///host:port`. */
export function proxylessListenerName(hostname: string, port?: number): string {
  return port === undefined ? hostname : `${hostname}:${port}`;
}

export function proxylessRouteName(hostname: string, port: number): string {
  return `${hostname}:${port}`;
}
