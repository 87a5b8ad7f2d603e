import type { IncomingMessage } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import { errorCodes, type FastifyInstance } from 'fastify';

/**
 * The most of an over-long body read (in all) before the connection is closed instead: four times
 * the route's limit, at most 64 MiB. A larger body is refused at once and its connection closed.
 */
export function discardCap(limit: number): number {
  return Math.min(4 * limit, 64 * 1024 * 1024);
}

/** How long the rest of an over-long body is read before the connection is closed instead. */
const DISCARD_MS = 30_000;

/** Node's own test of an Expect header for 100-continue (`continueExpression` in `_http_server`). */
const CONTINUE = /(?:^|\W)100-continue(?:$|\W)/i;

const BODYLESS = new Set(['GET', 'HEAD', 'TRACE']);

const tooLarge = () => new errorCodes.FST_ERR_CTP_BODY_TOO_LARGE();

/**
 * Refuses a body over the route's limit with a 413 its sender can read.
 *
 * Fastify refuses such a body as soon as it sees it (a `Content-Length` over the limit, or the limit
 * crossed while reading a chunked body) and sends the 413 with `Connection: close`; Node then closes
 * the socket while the client is still sending, the unread bytes reset the connection, and a client
 * that writes its whole body before reading (Python's urllib; Node's fetch over a network) sees only
 * EPIPE, the answer lost with the reset. So the rest of such a body is read and dropped first, and
 * the 413 follows on a connection still in order (kept open after a declared length, closed once
 * written after a chunked body). Bounded so that a
 * sender cannot keep a connection busy: past `discardCap` bytes or DISCARD_MS, the 413 is sent with
 * `Connection: close` without reading further, and a declared length over the cap is refused at once.
 *
 * `Expect: 100-continue` (RFC 9110 §10.1.1): Node would answer 100 before any route runs; it is
 * answered here instead, once the limit is known, so a body over it is refused before it is sent.
 *
 * After any early answer (401 before the body is read, 404, 405, 415), Node reads and drops the
 * unread body to keep the connection; that, too, stops at the cap and the time bound.
 */
export function installBodyLimit(app: FastifyInstance): void {
  const awaitingContinue = new WeakSet<IncomingMessage>();
  app.server.on('checkContinue', (req: IncomingMessage, res) => {
    awaitingContinue.add(req);
    app.server.emit('request', req, res);
  });

  app.addHook('preParsing', (request, reply, payload, done) => {
    if (BODYLESS.has(request.method)) return done(null, payload);
    const limit = request.routeOptions.bodyLimit;
    const header = request.headers['content-length'];
    const declared = header === undefined ? undefined : Number(header);
    const expectsContinue = awaitingContinue.has(request.raw) && CONTINUE.test(request.headers.expect ?? '');

    if (declared !== undefined && declared > limit) {
      // Without a 100, the client has not sent the body, and Node closes the connection after the answer.
      if (expectsContinue) return done(tooLarge());
      if (declared > discardCap(limit)) {
        reply.header('connection', 'close');
        return done(tooLarge());
      }
      discardRest(request.raw, discardCap(limit), (whole) => {
        if (!whole) reply.header('connection', 'close');
        done(tooLarge());
      });
      return;
    }
    if (expectsContinue) reply.raw.writeContinue();
    if (declared === undefined && request.headers['transfer-encoding'] !== undefined) {
      return done(null, withinLimit(payload, limit, discardCap(limit)));
    }
    done(null, payload);
  });

  app.addHook('onResponse', (request, _reply, done) => {
    const raw = request.raw;
    // A socket no longer writable is closing after this answer (`Connection: close`): nothing to read.
    if (!raw.complete && raw.socket?.writable) {
      discardRest(raw, discardCap(request.routeOptions.bodyLimit), (whole) => {
        if (!whole) raw.socket?.destroy();
      });
    }
    done();
  });
}

/**
 * Reads and drops the rest of `body`; `then(true)` once it has ended, `then(false)` when it ran past
 * `cap` bytes or DISCARD_MS, or failed (the reading then stops).
 */
function discardRest(body: IncomingMessage, cap: number, then: (whole: boolean) => void): void {
  let received = 0;
  const stop = (whole: boolean) => {
    clearTimeout(timer);
    body.off('data', count);
    body.off('end', ended);
    body.off('error', failed);
    if (!whole) body.pause();
    then(whole);
  };
  const count = (chunk: Buffer) => {
    received += chunk.length;
    if (received > cap) stop(false);
  };
  const ended = () => stop(true);
  const failed = () => stop(false);
  const timer = setTimeout(() => stop(false), DISCARD_MS);
  timer.unref();
  // A body piped into a parser that was never read (a 415 to a chunked body) is paused by backpressure.
  body.unpipe();
  body.on('data', count);
  body.once('end', ended);
  body.once('error', failed);
  body.resume();
}

/**
 * A chunked body as Fastify's parser reads it: the first `limit` bytes pass; past them, the rest is
 * dropped until the body ends (or passes `cap` bytes or DISCARD_MS), then the stream fails with
 * FST_ERR_CTP_BODY_TOO_LARGE, which Fastify answers with 413 and `Connection: close`.
 */
function withinLimit(source: Readable, limit: number, cap: number): Readable {
  let received = 0;
  let timer: NodeJS.Timeout | undefined;
  const body = new Transform({
    transform(chunk: Buffer, _encoding, next) {
      received += chunk.length;
      if (received <= limit) return next(null, chunk);
      if (received > cap) return next(tooLarge());
      if (!timer) {
        timer = setTimeout(() => body.destroy(tooLarge()), DISCARD_MS);
        timer.unref();
      }
      next();
    },
    flush(next) {
      clearTimeout(timer);
      next(received > limit ? tooLarge() : null);
    },
    destroy(err, next) {
      clearTimeout(timer);
      next(err);
    },
  });
  source.once('error', (err) => body.destroy(err));
  source.pipe(body);
  return body;
}
