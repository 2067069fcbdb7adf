import { TypeUrl } from '@fedmesh/api/xds';
import type { PushContext } from '../push-context.js';
import { toResource, type GeneratedResource } from './common.js';

/**
 * ROOTCA_SECRET is the SDS name of the trust bundle, as Istio names it. The workload's own certificate (`default`)
 * never comes from istiod: the proxy makes its key locally and gets it signed through the CA service.
 */
export const ROOTCA_SECRET = 'ROOTCA';

/** generateSecrets is the SDS generator: the `ROOTCA` validation context holding every root of the trust bundle. */
export function generateSecrets(push: PushContext): GeneratedResource[] {
  return [
    toResource(TypeUrl.Secret, ROOTCA_SECRET, {
      name: ROOTCA_SECRET,
      validation_context: { trusted_ca: { inline_string: push.trustBundlePem } },
    }),
  ];
}
