/**
 * A WebSocket echo app for the protocol suite (RFC 6455, just what an echo needs): it accepts the opening
 * handshake, records the upgrade request, and echoes every text and binary message back; a close frame is answered
 * and the connection ended. Frames from the client must be masked, as the RFC requires.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** frame encodes one unmasked (server) frame. */
function frame(opcode: number, payload: Buffer): Buffer {
  const n = payload.length;
  const head = n < 126 ? Buffer.alloc(2) : n < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
  head[0] = 0x80 | opcode;
  if (n < 126) head[1] = n;
  else if (n < 65536) {
    head[1] = 126;
    head.writeUInt16BE(n, 2);
  } else {
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(n), 2);
  }
  return Buffer.concat([head, payload]);
}

/** WsEcho is the running app: the upgrade requests it accepted and the messages it echoed. */
export interface WsEcho {
  server: http.Server;
  upgrades: http.IncomingHttpHeaders[];
  paths: string[];
  echoed: number;
  close(): Promise<void>;
}

/** startWsEcho listens on `host:port`; plain HTTP requests get 426. */
export async function startWsEcho(host: string, port: number): Promise<WsEcho> {
  const sockets = new Set<net.Socket>();
  const server = http.createServer((_req, res) => res.writeHead(426, { connection: 'close' }).end('websocket only\n'));
  const app: WsEcho = {
    server,
    upgrades: [],
    paths: [],
    echoed: 0,
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  server.on('upgrade', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    const key = req.headers['sec-websocket-key'];
    if (String(req.headers.upgrade).toLowerCase() !== 'websocket' || typeof key !== 'string')
      return void sock.destroy();
    app.upgrades.push(req.headers);
    app.paths.push(req.url ?? '');
    const accept = createHash('sha1')
      .update(key + GUID)
      .digest('base64');
    sock.write(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    );
    let buf = head;
    const parse = (): void => {
      for (;;) {
        if (buf.length < 2) return;
        const b0 = buf[0] ?? 0;
        const b1 = buf[1] ?? 0;
        let len = b1 & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if ((b1 & 0x80) === 0) return void sock.destroy(); // unmasked client frame
        if (buf.length < off + 4 + len) return;
        const mask = buf.subarray(off, off + 4);
        const payload = Buffer.from(buf.subarray(off + 4, off + 4 + len));
        for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] ?? 0) ^ (mask[i % 4] ?? 0);
        buf = buf.subarray(off + 4 + len);
        const opcode = b0 & 0x0f;
        if (opcode === 0x8) {
          sock.end(frame(0x8, payload.subarray(0, 2)));
          return;
        }
        if (opcode === 0x9) sock.write(frame(0xa, payload));
        else if (opcode === 0x1 || opcode === 0x2) {
          app.echoed++;
          sock.write(frame(opcode, payload));
        }
      }
    };
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      parse();
    });
    parse();
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  return app;
}
