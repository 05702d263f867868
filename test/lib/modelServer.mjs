// A model server on 127.0.0.1 for download tests: serves one file with HTTP Range support (404 under /missing),
// records every request, and can drop the connection part-way through a response (what a flaky network or a closed laptop lid does).
import { createServer } from "node:http";

/**
 * @param {Buffer} data the file served at every path
 * @param {{ cutAfterBytes?: number, cutRequests?: number, stallAfterBytes?: number }} [options] drop the connection
 *   after `cutAfterBytes` bytes of the body, for the first `cutRequests` GET requests (default 1 when cutAfterBytes is
 *   set); or send `stallAfterBytes` bytes of the first GET's body and then nothing more (a client must cancel it)
 * @returns {Promise<{ url: (name: string) => string, requests: { method: string, range: string | null }[],
 *   setData: (d: Buffer) => void, close: () => Promise<void> }>}
 */
export async function startModelServer(data, options = {}) {
  let body = data;
  let cutsLeft = options.cutAfterBytes === undefined ? 0 : options.cutRequests ?? 1;
  let stallsLeft = options.stallAfterBytes === undefined ? 0 : 1;
  const requests = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method ?? "", range: req.headers.range ?? null });
    if (req.url?.startsWith("/missing")) {
      res.writeHead(404, { "content-type": "text/plain" });
      return res.end("not found");
    }
    let start = 0;
    let end = body.length - 1;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    const headers = { "accept-ranges": "bytes", "content-type": "application/octet-stream" };
    if (m) {
      start = Number(m[1]);
      if (m[2]) end = Math.min(end, Number(m[2]));
      if (start >= body.length) {
        res.writeHead(416, { ...headers, "content-range": `bytes */${body.length}` });
        return res.end();
      }
      res.writeHead(206, { ...headers, "content-length": end - start + 1, "content-range": `bytes ${start}-${end}/${body.length}` });
    } else {
      res.writeHead(200, { ...headers, "content-length": body.length });
    }
    if (req.method === "HEAD") return res.end();
    const part = body.subarray(start, end + 1);
    if (cutsLeft > 0 && options.cutAfterBytes !== undefined) {
      cutsLeft--;
      // Written first and given time to be read, so that the client really has these bytes when the socket goes.
      res.write(part.subarray(0, options.cutAfterBytes), () => setTimeout(() => req.socket.destroy(), 200));
      return;
    }
    if (stallsLeft > 0 && options.stallAfterBytes !== undefined) {
      stallsLeft--;
      res.write(part.subarray(0, options.stallAfterBytes));
      return;
    }
    res.end(part);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: (name) => `http://127.0.0.1:${port}/${name}`,
    requests,
    setData: (d) => {
      body = d;
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
