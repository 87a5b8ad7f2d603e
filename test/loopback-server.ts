import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface LoopbackServer {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Stops listening and drops kept-alive connections, so a test's end never waits on a client. */
  close(): Promise<void>;
}

/** Starts `server` on a free loopback port: a peer (token endpoint, downstream service) for a test. */
export async function listenOnLoopback(server: Server): Promise<LoopbackServer> {
  const port = await new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
