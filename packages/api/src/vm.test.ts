import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatClusterEnv,
  formatHostsFile,
  formatMeshConfigFile,
  InvalidConfigError,
  parseClusterEnv,
  parseHostsFile,
  parseMeshConfigFile,
  WORKLOAD_HEALTH_SERVICE,
  type VmClusterEnv,
} from './index.js';

const ENV: VmClusterEnv = {
  namespace: 'vm',
  serviceAccount: 'legacy',
  workloadGroup: 'legacy-app',
  clusterId: 'east',
  network: '',
  labels: { app: 'legacy', version: 'v1' },
  trustDomain: 'cluster.local',
  inboundPorts: [8080, 9090],
  probe: { httpGet: { path: '/ready', port: 8080 }, periodSeconds: 1, failureThreshold: 2 },
};

function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(InvalidConfigError.isInvalidConfigError(err), String(err));
    return err.issues.map((i) => `${i.path}: ${i.message}`);
  }
  assert.fail('expected InvalidConfigError');
}

describe('VM onboarding files', () => {
  it('cluster.env round-trips through format and parse, shell quoting included', () => {
    const text = formatClusterEnv({ ...ENV, labels: { app: 'legacy' }, instanceIp: '10.0.0.7' });
    assert.match(text, /^ISTIO_NAMESPACE='vm'$/m);
    assert.deepEqual(parseClusterEnv(text), { ...ENV, labels: { app: 'legacy' }, instanceIp: '10.0.0.7' });
    assert.equal(parseClusterEnv(`${text}ISTIO_META_NETWORK='it'\\''s'\n`).network, "it's");
    const noProbe = parseClusterEnv(formatClusterEnv({ ...ENV, probe: undefined }));
    assert.equal(noProbe.probe, undefined);
    assert.equal(noProbe.instanceIp, undefined);
  });

  it('cluster.env problems are reported by key and line', () => {
    const issues = issuesOf(() =>
      parseClusterEnv(
        [
          'ISTIO_NAMESPACE=Not_A_Label',
          'this is not an assignment',
          'ISTIO_METAJSON_LABELS={"app":',
          'FEDMESH_READINESS_PROBE=\'{"httpGet":{"port":99999}}\'',
          'FEDMESH_INSTANCE_IP=10.0.0',
        ].join('\n'),
      ),
    );
    assert.ok(issues.includes('line 2: must be KEY=value'), issues.join('\n'));
    assert.ok(
      issues.some((i) => i.startsWith('ISTIO_NAMESPACE: must be a lowercase RFC 1123 label')),
      issues.join('\n'),
    );
    assert.ok(issues.includes('SERVICE_ACCOUNT: required'), issues.join('\n'));
    assert.ok(issues.includes('ISTIO_METAJSON_LABELS: must be JSON'), issues.join('\n'));
    assert.ok(
      issues.some((i) => i.startsWith('FEDMESH_READINESS_PROBE: httpGet.port: must be ≤ 65535')),
      issues.join('\n'),
    );
    assert.ok(
      issues.some((i) => i.startsWith('FEDMESH_INSTANCE_IP:')),
      issues.join('\n'),
    );
  });

  it('mesh.yaml needs a host:port discovery address; other MeshConfig fields pass', () => {
    const parsed = parseMeshConfigFile(formatMeshConfigFile('istiod.istio-system.svc:15012', 'cluster.local'));
    assert.equal(parsed.defaultConfig.discoveryAddress, 'istiod.istio-system.svc:15012');
    assert.equal(parsed.trustDomain, 'cluster.local');
    assert.ok(parseMeshConfigFile('accessLogFile: /dev/stdout\ndefaultConfig: {discoveryAddress: "[::1]:15012"}\n'));
    assert.deepEqual(
      issuesOf(() => parseMeshConfigFile('defaultConfig: {discoveryAddress: istiod}\n')),
      ['defaultConfig.discoveryAddress: must be host:port'],
    );
    assert.match(issuesOf(() => parseMeshConfigFile('a: [\n'))[0] ?? '', /^: not YAML/);
    assert.deepEqual(issuesOf(() => parseMeshConfigFile('x'.repeat(70_000)))[0], ': larger than 65536 bytes');
  });

  it('hosts lines are checked', () => {
    const text = formatHostsFile([{ address: '10.1.2.3', names: ['istiod.istio-system.svc', 'istiod'] }]);
    assert.deepEqual(parseHostsFile(`${text}\n# comment\n::1 localhost6 # trailing\n`), [
      { address: '10.1.2.3', names: ['istiod.istio-system.svc', 'istiod'] },
      { address: '::1', names: ['localhost6'] },
    ]);
    assert.deepEqual(
      issuesOf(() => parseHostsFile('istiod 10.1.2.3\n10.1.2.4\n')),
      ['line 1: "istiod" is not an IP', 'line 2: has no host name'],
    );
  });

  it('the health method codes JSON and refuses oversized messages', () => {
    const m = WORKLOAD_HEALTH_SERVICE.Report;
    const report = { proxyId: 'sidecar~10.0.0.7~vm-1.vm~vm.svc.cluster.local', healthy: false, message: 'HTTP 503' };
    assert.deepEqual(m.requestDeserialize(m.requestSerialize(report)), report);
    assert.throws(() => m.requestDeserialize(Buffer.alloc(5_000, 0x20)), /too large/);
    assert.throws(() => m.requestDeserialize(Buffer.from('{')), SyntaxError);
  });
});
