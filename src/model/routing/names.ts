/** Cluster names follow Istio's, so its docs and habits carry over; EDS names equal them. */
export function clusterName(port: number, hostname: string, subset = ''): string {
  return `outbound|${port}|${subset}|${hostname}`;
}
