import { parseEndpointMode, type EndpointMode } from './kube/endpoint-mode.js';

/**
 * IstiodFeatures are the settings istiod takes from its environment, each under Istio's variable name:
 * - `PILOT_USE_ENDPOINT_SLICE` → `endpointMode` (see {@link EndpointMode}): unset = `auto` (EndpointSlices when the
 *   API server serves discovery.k8s.io v1 or v1beta1, else Endpoints), `true` = EndpointSlices, `false` = Endpoints.
 */
export interface IstiodFeatures {
  endpointMode: EndpointMode;
}

/**
 * readFeatures reads {@link IstiodFeatures} from `env` (default `process.env`) once, at startup. Throws an Error
 * naming the variable for a value it cannot parse.
 */
export function readFeatures(env: NodeJS.ProcessEnv = process.env): IstiodFeatures {
  return { endpointMode: parseEndpointMode(env['PILOT_USE_ENDPOINT_SLICE']) };
}
