import http from 'node:http';

/** EchoIdentity is what the echo app reports about itself. */
export interface EchoIdentity {
  service: string;
  version: string;
  pod: string;
  namespace: string;
  serviceAccount: string;
  /** cluster is the cluster the pod runs in (fedmesh's `topology.istio.io/cluster`). */
  cluster: string;
}

/** EchoResponse is the JSON body the echo app answers every request with. */
export interface EchoResponse extends EchoIdentity {
  /** callerPrincipal is the SPIFFE ID from `x-forwarded-client-cert` (`URI=` of the last element), or null. */
  callerPrincipal: string | null;
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * callerFromXfcc extracts the caller's SPIFFE ID from an `x-forwarded-client-cert` header (Envoy's format,
 * `By=…;Hash=…;URI=spiffe://…`, elements separated by commas; the last element is the nearest peer).
 */
export function callerFromXfcc(xfcc: string | string[] | undefined): string | null {
  const value = Array.isArray(xfcc) ? xfcc.join(',') : xfcc;
  if (!value) return null;
  const last = value.split(',').pop() ?? '';
  for (const part of last.split(';')) {
    const [k, v] = part.split('=', 2);
    if (k?.trim().toLowerCase() === 'uri' && v) return v.trim().replace(/^"|"$/g, '');
  }
  return null;
}

/**
 * createEchoServer makes the fedmesh echo app: every request is answered 200 with an {@link EchoResponse}.
 * It stands in for every container of a local mesh. Timeouts and header limits are explicit.
 */
export function createEchoServer(identity: EchoIdentity): http.Server {
  const server = http.createServer(
    { headersTimeout: 10_000, requestTimeout: 30_000, keepAliveTimeout: 15_000, maxHeaderSize: 32 * 1024 },
    (req, res) => {
      req.resume();
      req.on('end', () => {
        const body: EchoResponse = {
          ...identity,
          callerPrincipal: callerFromXfcc(req.headers['x-forwarded-client-cert']),
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
        };
        const text = JSON.stringify(body);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      });
    },
  );
  server.maxConnections = 4096;
  return server;
}
