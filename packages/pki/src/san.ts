/** NodeAltNames are the entries of Node's `X509Certificate.subjectAltName` string, grouped by kind. */
export interface NodeAltNames {
  readonly uris: string[];
  readonly dns: string[];
  readonly ips: string[];
  readonly other: string[];
}

/**
 * parseNodeSubjectAltName splits Node's `subjectAltName` text (`URI:spiffe://…, DNS:a, IP Address:1.2.3.4`). Node
 * JSON-quotes any value holding `,`, quotes, backslashes or control characters (CVE-2021-44532), so a quoted value is
 * decoded as a JSON string and unquoted values end at the next `, `.
 */
export function parseNodeSubjectAltName(text: string | undefined): NodeAltNames {
  const out: NodeAltNames = { uris: [], dns: [], ips: [], other: [] };
  if (text === undefined) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) throw new TypeError('malformed subjectAltName');
    const kind = text.slice(i, colon);
    i = colon + 1;
    let value: string;
    if (text[i] === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(i, j + 1)) as string;
      i = j + 1;
    } else {
      const comma = text.indexOf(', ', i);
      const end = comma < 0 ? text.length : comma;
      value = text.slice(i, end);
      i = end;
    }
    if (text.startsWith(', ', i)) i += 2;
    if (kind === 'URI') out.uris.push(value);
    else if (kind === 'DNS') out.dns.push(value);
    else if (kind === 'IP Address') out.ips.push(value);
    else out.other.push(`${kind}:${value}`);
  }
  return out;
}
