/**
 * Types for the `hpack.js` npm package (2.1.6, RFC 7541 HPACK in plain JavaScript), which ships none. Only the
 * parts the raw HTTP/2 client of the security suites uses: a compressor that turns a header list into one header
 * block, and a decompressor that turns header blocks back into fields, each keeping its connection's dynamic
 * table. Strings are latin1: each character below U+0100 is one octet on the wire.
 */
declare module 'hpack.js' {
  /** HpackField is one header field; `huffman: false` sends the octets as they are, `neverIndex` marks it sensitive. */
  interface HpackField {
    name: string;
    value: string;
    huffman?: boolean;
    neverIndex?: boolean;
    incremental?: boolean;
  }
  /** HpackTableOptions: `maxSize` is SETTINGS_HEADER_TABLE_SIZE in octets (4,096 unless the peer set another). */
  interface HpackTableOptions {
    maxSize: number;
  }
  /** Compressor: `write(fields)` encodes one header block, which `read()` then returns (null when none is pending). */
  interface Compressor {
    write(fields: HpackField[]): boolean;
    read(): Buffer | null;
  }
  /** Decompressor: `write(block)` then `execute()` decodes; `read()` returns one field at a time, null when done. */
  interface Decompressor {
    write(block: Buffer): boolean;
    execute(): void;
    read(): HpackField | null;
    on(event: 'error', listener: (err: Error) => void): this;
  }
  const hpack: {
    compressor: { create(options: { table: HpackTableOptions }): Compressor };
    decompressor: { create(options: { table: HpackTableOptions }): Decompressor };
  };
  export default hpack;
}
