import type { Command } from 'commander';
import { request } from 'undici';
import { adminToken, readState, type MeshState, type PodState } from '../local-mesh.js';
import { DEFAULT_STATE_DIR } from './mesh.js';

async function getJson(url: string, token?: string): Promise<unknown> {
  const res = await request(url, {
    headers: token ? { authorization: `Bearer ${token}` } : {},
    headersTimeout: 5_000,
    bodyTimeout: 10_000,
  });
  if (res.statusCode !== 200) throw new Error(`${url}: HTTP ${res.statusCode}: ${await res.body.text()}`);
  return res.body.json();
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd((widths[i] ?? 0) + 3))
        .join('')
        .trimEnd(),
    )
    .join('\n');
}

/** findPod resolves `name` or `name.namespace` to a pod of a local mesh; throws when there is none. */
export function findPod(state: MeshState, ref: string): PodState {
  const [name, ns] = ref.split('.');
  const pod = state.pods.find((p) => p.name === name && (ns === undefined || p.namespace === ns));
  if (!pod) throw new Error(`no pod ${ref} (known: ${state.pods.map((p) => `${p.name}.${p.namespace}`).join(', ')})`);
  return pod;
}

interface ConfigDump {
  listeners: {
    name: string;
    resource: {
      address?: { socket_address?: { address: string; port_value: number } };
      filter_chains?: { name?: string; filter_chain_match?: { server_names?: string[] } }[];
    };
  }[];
  routes: {
    name: string;
    resource: {
      config?: {
        virtual_hosts?: {
          name: string;
          domains: string[];
          routes?: { match: Record<string, unknown>; name?: string }[];
        }[];
      };
    };
  }[];
  clusters: { name: string; resource: { type?: string; name: string } }[];
  endpoints: {
    name: string;
    resource: {
      cluster_name: string;
      endpoints?: {
        lb_endpoints?: {
          endpoint: { address: { socket_address: { address: string; port_value: number } } };
          health_status?: string;
        }[];
      }[];
    };
  }[];
  secrets: {
    name: string;
    spiffeId?: string;
    notAfter?: string;
    notBefore?: string;
    serialNumber?: string;
    trustBundle?: string;
  }[];
}

function render(kind: string, d: ConfigDump): string {
  switch (kind) {
    case 'cluster':
    case 'clusters':
      return table([
        ['SERVICE FQDN', 'PORT', 'SUBSET', 'DIRECTION', 'TYPE'],
        ...d.clusters.map((c) => {
          const [dir = '', port = '', subset = '', host = ''] = c.name.split('|');
          return [host || c.name, port, subset || '-', dir, c.resource.type ?? ''];
        }),
      ]);
    case 'listener':
    case 'listeners':
      return table([
        ['NAME', 'ADDRESS', 'PORT', 'MATCH'],
        ...d.listeners.flatMap((l) =>
          (l.resource.filter_chains ?? []).map((fc) => [
            l.name,
            l.resource.address?.socket_address?.address ?? '',
            String(l.resource.address?.socket_address?.port_value ?? ''),
            fc.filter_chain_match?.server_names?.join(',') ?? 'ALL',
          ]),
        ),
      ]);
    case 'route':
    case 'routes':
      return table([
        ['NAME', 'VIRTUAL HOST', 'DOMAINS', 'MATCH'],
        ...d.routes.flatMap((r) =>
          (r.resource.config?.virtual_hosts ?? []).flatMap((vh) =>
            (vh.routes ?? []).map((rt) => [
              r.name,
              vh.name,
              vh.domains.slice(0, 2).join(',') + (vh.domains.length > 2 ? ` +${vh.domains.length - 2} more` : ''),
              JSON.stringify(rt.match),
            ]),
          ),
        ),
      ]);
    case 'endpoint':
    case 'endpoints':
      return table([
        ['ENDPOINT', 'STATUS', 'CLUSTER'],
        ...d.endpoints.flatMap((e) =>
          (e.resource.endpoints ?? []).flatMap((le) =>
            (le.lb_endpoints ?? []).map((lb) => [
              `${lb.endpoint.address.socket_address.address}:${lb.endpoint.address.socket_address.port_value}`,
              lb.health_status ?? 'UNKNOWN',
              e.name,
            ]),
          ),
        ),
      ]);
    case 'secret':
    case 'secrets':
      return table([
        ['RESOURCE NAME', 'TYPE', 'STATUS', 'SPIFFE ID / ROOTS', 'NOT AFTER'],
        ...d.secrets.map((s) =>
          s.name === 'ROOTCA'
            ? ['ROOTCA', 'CA', 'ACTIVE', `${(s.trustBundle ?? '').split('BEGIN CERTIFICATE').length - 1} root(s)`, '-']
            : [s.name, 'Cert Chain', 'ACTIVE', s.spiffeId ?? '', s.notAfter ?? ''],
        ),
      ]);
    default:
      throw new Error(`unknown config kind ${kind}: want cluster, listener, route, endpoint or secret`);
  }
}

/** registerDiagnostics adds `fedmesh proxy-status` and `fedmesh proxy-config` for a local mesh. */
export function registerDiagnostics(program: Command): void {
  program
    .command('proxy-status')
    .description('show every connected proxy and whether each xDS type is SYNCED, STALE, NACKED or NOT SENT')
    .option('--state-dir <dir>', 'state directory', DEFAULT_STATE_DIR)
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (o: { stateDir: string; output: string }) => {
      const state = readState(o.stateDir);
      const status = (await getJson(`http://${state.istiod.monitoring}/debug/syncz`, adminToken(state.stateDir))) as {
        id: string;
        types: Record<string, { status: string }>;
      }[];
      if (o.output === 'json') return console.log(JSON.stringify(status, null, 2));
      const types = ['CDS', 'LDS', 'EDS', 'RDS', 'SDS'];
      const rows = status
        .map((s) => {
          const parts = s.id.split('~');
          const name = parts[2]?.replace(/\.([^.]+)$/, '.$1') ?? s.id;
          return [name, ...types.map((t) => s.types[t]?.status ?? 'NOT SENT'), state.istiod.xdsTls];
        })
        .sort((a, b) => ((a[0] ?? '') < (b[0] ?? '') ? -1 : 1));
      console.log(table([['NAME', ...types, 'ISTIOD'], ...rows]));
    });

  program
    .command('proxy-config')
    .description(
      "show a proxy's accepted config: proxy-config cluster|listener|route|endpoint|secret <pod[.namespace]>",
    )
    .argument('<kind>', 'cluster, listener, route, endpoint or secret')
    .argument('<pod>', 'pod name, optionally .namespace')
    .option('--state-dir <dir>', 'state directory', DEFAULT_STATE_DIR)
    .option('-o, --output <format>', 'table or json', 'table')
    .action(async (kind: string, podRef: string, o: { stateDir: string; output: string }) => {
      const state = readState(o.stateDir);
      const pod = findPod(state, podRef);
      const dump = (await getJson(`http://${pod.admin}/config_dump`)) as ConfigDump;
      if (o.output === 'json') {
        const key = {
          cluster: 'clusters',
          listener: 'listeners',
          route: 'routes',
          endpoint: 'endpoints',
          secret: 'secrets',
        }[kind.replace(/s$/, '')];
        if (!key) throw new Error(`unknown config kind ${kind}`);
        return console.log(JSON.stringify((dump as unknown as Record<string, unknown>)[key], null, 2));
      }
      console.log(render(kind, dump));
    });
}
