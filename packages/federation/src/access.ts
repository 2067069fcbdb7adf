import { Etcd3, Range } from 'etcd3';
import { keys, subjects } from './model.js';

/** ClusterCredentials are one cluster's etcd user and NATS user (same name `<mesh>-<cluster>`) and password. */
export interface ClusterCredentials {
  cluster: string;
  password: string;
}

/** accessUser is the etcd and NATS user name of a cluster: `<mesh>-<cluster>`. */
export function accessUser(mesh: string, cluster: string): string {
  return `${mesh}-${cluster}`;
}

/**
 * provisionEtcdAccess turns on etcd authentication for a mesh (etcd v3 RBAC,
 * https://etcd.io/docs/v3.4/op-guide/authentication/): a `root` user (password `rootPassword`) and, per cluster, a
 * user `<mesh>-<cluster>` whose role may read everything under `/fedmesh/<mesh>/` but write only its own keys:
 * `/fedmesh/<mesh>/clusters/<cluster>` and `/fedmesh/<mesh>/endpoints/<cluster>/…`. The trust bundle
 * (`/fedmesh/<mesh>/trust/`) is writable by root only. Idempotent for users and roles that already exist. Rejects
 * if etcd is unreachable or auth is already on and `rootPassword` is wrong.
 */
export async function provisionEtcdAccess(opts: {
  endpoints: string[];
  rootPassword: string;
  mesh: string;
  clusters: readonly ClusterCredentials[];
}): Promise<void> {
  const client = new Etcd3({ hosts: opts.endpoints, dialTimeout: 5_000 });
  const ignoreExists = (err: unknown): void => {
    if (!/already exists/i.test((err as Error).message)) throw err;
  };
  try {
    await client.user('root').create(opts.rootPassword).catch(ignoreExists);
    await client.role('root').create().catch(ignoreExists);
    await client.user('root').addRole('root');
    for (const c of opts.clusters) {
      const name = accessUser(opts.mesh, c.cluster);
      const role = client.role(name);
      await role.create().catch(ignoreExists);
      await role.grant([
        { permission: 'Read', range: Range.prefix(`/fedmesh/${opts.mesh}/`) },
        { permission: 'Readwrite', key: keys.cluster(opts.mesh, c.cluster) },
        { permission: 'Readwrite', range: Range.prefix(keys.endpointsOf(opts.mesh, c.cluster)) },
      ]);
      await client.user(name).create(c.password).catch(ignoreExists);
      await client.user(name).addRole(name);
    }
    await client.auth.authEnable();
  } finally {
    client.close();
  }
}

/**
 * natsAccessConfig renders a nats-server `authorization` block for a mesh: per cluster a user `<mesh>-<cluster>`
 * that may publish only on its own subjects (`fedmesh.<mesh>.endpoints.<cluster>`,
 * `fedmesh.<mesh>.heartbeat.<cluster>`) and subscribe to the mesh's subjects (NATS subject permissions,
 * https://docs.nats.io/running-a-nats-service/configuration/securing_nats/authorization). Passwords are written as
 * given; keep the file private (mode 0600).
 */
export function natsAccessConfig(mesh: string, clusters: readonly ClusterCredentials[]): string {
  const q = (s: string): string => JSON.stringify(s);
  const users = clusters.map((c) => {
    const pub = [subjects.endpoints(mesh, c.cluster), subjects.heartbeat(mesh, c.cluster), '_INBOX.>'];
    const sub = [`fedmesh.${mesh}.>`, '_INBOX.>'];
    return `    { user: ${q(accessUser(mesh, c.cluster))}, password: ${q(c.password)}, permissions: { publish: { allow: [${pub.map(q).join(', ')}] }, subscribe: { allow: [${sub.map(q).join(', ')}] } } }`;
  });
  return `authorization {\n  users = [\n${users.join(',\n')}\n  ]\n}\n`;
}
