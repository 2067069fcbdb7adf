import { randomFillSync } from 'node:crypto';

/**
 * DEFAULT_SAMPLING_PERCENT is Istio's default trace sampling (`meshConfig.defaultConfig.tracing.sampling`, 1%),
 * used when the proxy starts a trace and the caller made no sampling decision.
 */
export const DEFAULT_SAMPLING_PERCENT = 1;

/** TraceContext is one hop's span: the trace, this hop's span, its parent and the sampling decision. */
export interface TraceContext {
  /** traceId is the 128-bit trace ID as 32 lower-case hex digits (a 64-bit B3 ID is left-padded with zeros). */
  traceId: string;
  /** b3TraceId is the trace ID as B3 carries it (16 hex digits when the caller sent a 64-bit ID). */
  b3TraceId: string;
  /** spanId is the span this proxy creates for the hop (16 hex digits). */
  spanId: string;
  /** parentSpanId is the caller's span, absent when this proxy started the trace. */
  parentSpanId: string | undefined;
  sampled: boolean;
  /** started is true when no valid incoming context existed and this proxy began the trace. */
  started: boolean;
}

type Headers = Readonly<Record<string, string | string[] | undefined>>;

const HEX16 = /^[0-9a-f]{16}$/;
const HEX32 = /^[0-9a-f]{32}$/;

function one(h: Headers, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

function nonZero(hex: string): boolean {
  return /[1-9a-f]/.test(hex);
}

/** ID_POOL_BYTES is how many random bytes are drawn at once for trace and span IDs (512 span IDs). */
const ID_POOL_BYTES = 4096;
const idPool = Buffer.alloc(ID_POOL_BYTES);
let idPoolUsed = ID_POOL_BYTES;

/**
 * newId returns `bytes` random bytes as lower-case hex, never all zeros (W3C and B3 forbid an all-zero ID). The
 * bytes come from a pool refilled from the CSPRNG when used up: one `randomFillSync` per 512 span IDs instead of a
 * `randomBytes` call (and its Buffer) per ID; each byte is handed out once.
 */
function newId(bytes: number): string {
  for (;;) {
    if (idPoolUsed + bytes > ID_POOL_BYTES) {
      randomFillSync(idPool);
      idPoolUsed = 0;
    }
    const start = idPoolUsed;
    idPoolUsed += bytes;
    for (let i = start; i < start + bytes; i++)
      if (idPool[i] !== 0) return idPool.toString('hex', start, start + bytes);
  }
}

function parseTraceparent(v: string | undefined): { traceId: string; parent: string; sampled: boolean } | undefined {
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/.exec((v ?? '').trim());
  if (!m) return undefined;
  const [, version = '', traceId = '', parent = '', flags = '', rest] = m;
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  if (!nonZero(traceId) || !nonZero(parent)) return undefined;
  return { traceId, parent, sampled: (parseInt(flags, 16) & 1) === 1 };
}

function parseB3Sampled(v: string | undefined, flags: string | undefined): boolean | undefined {
  if (flags === '1') return true;
  if (v === '1' || v === 'true' || v === 'd') return true;
  if (v === '0' || v === 'false') return false;
  return undefined;
}

function parseB3(h: Headers): { traceId: string; span: string; sampled: boolean | undefined } | undefined {
  let traceId = one(h, 'x-b3-traceid')?.toLowerCase();
  let span = one(h, 'x-b3-spanid')?.toLowerCase();
  let sampled = parseB3Sampled(one(h, 'x-b3-sampled')?.toLowerCase(), one(h, 'x-b3-flags'));
  const single = one(h, 'b3')?.toLowerCase();
  if ((!traceId || !span) && single) {
    const [t, s, d] = single.split('-');
    traceId = t;
    span = s;
    sampled = parseB3Sampled(d, undefined);
  }
  if (!traceId || !span || !(HEX16.test(traceId) || HEX32.test(traceId)) || !HEX16.test(span)) return undefined;
  if (!nonZero(traceId) || !nonZero(span)) return undefined;
  return { traceId, span, sampled };
}

/**
 * startSpan reads the incoming trace context, W3C `traceparent` first, else B3 (`x-b3-traceid`, `x-b3-spanid`,
 * `x-b3-sampled`, `x-b3-flags`, or the single `b3` header), and creates this hop's child span with a new span ID.
 * With no valid context it starts a trace (new 128-bit trace ID), sampled with probability
 * `samplingPercent`/100; a caller's sampling decision is always kept.
 */
export function startSpan(
  headers: Headers,
  samplingPercent = DEFAULT_SAMPLING_PERCENT,
  random: () => number = Math.random,
): TraceContext {
  const decide = (): boolean => random() * 100 < samplingPercent;
  const w3c = parseTraceparent(one(headers, 'traceparent'));
  if (w3c) {
    const b3 = parseB3(headers);
    return {
      traceId: w3c.traceId,
      b3TraceId: b3 && b3.traceId.padStart(32, '0') === w3c.traceId ? b3.traceId : w3c.traceId,
      spanId: newId(8),
      parentSpanId: w3c.parent,
      sampled: w3c.sampled,
      started: false,
    };
  }
  const b3 = parseB3(headers);
  if (b3)
    return {
      traceId: b3.traceId.padStart(32, '0'),
      b3TraceId: b3.traceId,
      spanId: newId(8),
      parentSpanId: b3.span,
      sampled: b3.sampled ?? decide(),
      started: false,
    };
  const traceId = newId(16);
  return { traceId, b3TraceId: traceId, spanId: newId(8), parentSpanId: undefined, sampled: decide(), started: true };
}

/**
 * injectSpan writes a span into the headers sent upstream, in both formats so that either kind of tracer can
 * join: `traceparent` (version 00, this span as parent-id, the sampled flag; `tracestate` is left as received)
 * and B3 multi-headers (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`; a single `b3`
 * header is replaced by them).
 */
export function injectSpan(headers: Record<string, string | string[]>, t: TraceContext): void {
  headers.traceparent = `00-${t.traceId}-${t.spanId}-${t.sampled ? '01' : '00'}`;
  delete headers.b3;
  headers['x-b3-traceid'] = t.b3TraceId;
  headers['x-b3-spanid'] = t.spanId;
  if (t.parentSpanId !== undefined) headers['x-b3-parentspanid'] = t.parentSpanId;
  else delete headers['x-b3-parentspanid'];
  headers['x-b3-sampled'] = t.sampled ? '1' : '0';
}
