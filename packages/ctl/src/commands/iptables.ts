import type { Command } from 'commander';
import {
  applyCaptureRules,
  captureRules,
  DEFAULT_INBOUND_EXCLUDED_PORTS,
  ISTIO_PROXY_UID,
  removeCaptureRules,
} from '@fedmesh/proxy';

function ports(list: string): number[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map(Number);
}

/**
 * registerIptables adds `fedmesh iptables`, fedmesh's `istio-iptables`: it installs (or with `--cleanup` removes)
 * the `nat` rules that redirect the current network namespace's TCP to a capture-mode sidecar (outbound to
 * 15001, inbound to 15006), sparing the proxy's uid. `--dry-run` prints the `iptables-restore` input instead.
 */
export function registerIptables(program: Command): void {
  program
    .command('iptables')
    .description(
      "redirect this network namespace's TCP to the sidecar (outbound 15001, inbound 15006), as istio-iptables",
    )
    .option('--proxy-uid <uid>', "the proxy's uid, whose traffic is not captured", String(ISTIO_PROXY_UID))
    .option('--proxy-gid <gid>', "the proxy's gid (default: the uid)")
    .option('--inbound-exclude-ports <ports>', 'inbound ports left alone', DEFAULT_INBOUND_EXCLUDED_PORTS.join(','))
    .option('--netns <name>', 'apply in this named network namespace (ip netns exec)')
    .option('--cleanup', 'remove the rules instead')
    .option('--dry-run', 'print the rules and change nothing')
    .action(
      async (o: {
        proxyUid: string;
        proxyGid?: string;
        inboundExcludePorts: string;
        netns?: string;
        cleanup?: boolean;
        dryRun?: boolean;
      }) => {
        const opts = {
          proxyUid: Number(o.proxyUid),
          ...(o.proxyGid !== undefined ? { proxyGid: Number(o.proxyGid) } : {}),
          inboundExcludedPorts: ports(o.inboundExcludePorts),
          ...(o.netns !== undefined ? { netns: o.netns } : {}),
        };
        if (o.dryRun) return void process.stdout.write(o.cleanup ? '' : captureRules(opts));
        if (o.cleanup) {
          await removeCaptureRules(opts);
          return;
        }
        await applyCaptureRules(opts);
      },
    );
}
