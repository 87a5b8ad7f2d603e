import net from 'node:net';

/** A TCP proxy in front of a server whose path can be cut (sockets aborted) or paused (bytes held, sockets open). */
export interface TcpProxy {
  port: number;
  /** Aborts every connection and refuses new ones until `restore`. */
  cut(): void;
  /** Holds every byte in both directions, new connections' too, keeping the sockets open, until `restore`. */
  pause(): void;
  /** Passes bytes again (the held ones first) and accepts connections. */
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(host: string, port: number): Promise<TcpProxy> {
  let mode: 'open' | 'cut' | 'paused' = 'open';
  const sockets = new Set<net.Socket>();
  const flushes = new Set<() => void>();

  const relay = (from: net.Socket, to: net.Socket) => {
    const held: Buffer[] = [];
    from.on('data', (chunk: Buffer) => {
      if (mode === 'paused') held.push(chunk);
      else to.write(chunk);
    });
    flushes.add(() => {
      for (const chunk of held.splice(0)) to.write(chunk);
    });
  };

  const server = net.createServer((down) => {
    if (mode === 'cut') {
      down.resetAndDestroy();
      return;
    }
    const up = net.connect(port, host);
    for (const s of [down, up]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        sockets.delete(s);
        down.destroy();
        up.destroy();
      });
    }
    relay(down, up);
    relay(up, down);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut: () => {
      mode = 'cut';
      for (const s of sockets) s.resetAndDestroy();
    },
    pause: () => {
      mode = 'paused';
    },
    restore: () => {
      mode = 'open';
      for (const flush of flushes) flush();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
