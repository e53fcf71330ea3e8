/**
 * A tiny static file server over a folder, on 127.0.0.1 with an ephemeral port, for tests that
 * import this checkout by URL. Serves files under the folder only (no listing, no `..`), with
 * the content types Deno's module loader needs. `await using` stops it.
 */

/** A file: URL's path (POSIX). */
export function fromFileUrl(url: URL): string {
  return decodeURIComponent(url.pathname);
}

const TYPES: Record<string, string> = {
  ts: "application/typescript; charset=utf-8",
  js: "application/javascript; charset=utf-8",
  json: "application/json; charset=utf-8",
  wasm: "application/wasm",
};

/** A running server: `base` is `http://127.0.0.1:PORT`, `host` is `127.0.0.1:PORT`. */
export interface CheckoutServer extends AsyncDisposable {
  base: string;
  host: string;
}

export function serveCheckout(root: string): CheckoutServer {
  const prefix = root.endsWith("/") ? root : root + "/";
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (req.method !== "GET" || path.split("/").includes("..")) {
        return new Response("bad request", { status: 400 });
      }
      try {
        const body = await Deno.readFile(prefix + path.replace(/^\/+/, ""));
        const ext = path.slice(path.lastIndexOf(".") + 1);
        return new Response(body, {
          headers: { "content-type": TYPES[ext] ?? "application/octet-stream" },
        });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const { port } = server.addr as Deno.NetAddr;
  return {
    base: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}
