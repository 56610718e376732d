/**
 * The first layer of a grpc-js server call (the call a handler gets, then
 * each interceptor's `nextCall` in turn, down to the one that reads and
 * writes the HTTP/2 stream) that `matches`. grpc-js (1.14) keeps these layers
 * private; meshbridge reads them to reset a call and to read its requests
 * itself, and finds nothing, so changes nothing, when they change.
 */
export function callLayer<T>(call: unknown, matches: (layer: Record<string, unknown>) => boolean): T | undefined {
  let layer = (call as { call?: unknown }).call;
  for (let depth = 0; depth < 8 && typeof layer === 'object' && layer !== null; depth++) {
    const fields = layer as Record<string, unknown>;
    if (matches(fields)) return layer as T;
    layer = fields['nextCall'];
  }
  return undefined;
}
