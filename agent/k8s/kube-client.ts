// SPDX-License-Identifier: Apache-2.0
// The agent's only door to the Kubernetes API server, and the only module that
// imports @kubernetes/client-node. From the client library we take what is
// hard to get right (kubeconfig parsing, in-cluster config with its rotating
// token file, auth plugins, TLS material); requests themselves are raw JSON over
// node:https, so the rest of the agent sees plain API objects exactly as the
// server sent them (no model classes, no Date conversion) and the watch stream
// has the timeouts and error reporting the reflector needs.
//
// API: `loadKubeClient(kubeconfig | null)` -> `KubeClient` {server,
// request(method, path, body?, opts?), watch(path, query, onEvent, signal)};
// `KubeApiError` (HTTP status + Status reason), `isKubeApiError(e, status?)`;
// the JSON shapes `KubeObject`, `KubeList`, `WatchEvent`.
import * as https from "node:https";
import * as http from "node:http";
import { createInterface } from "node:readline";
import { KubeConfig } from "@kubernetes/client-node";

/** Object metadata fields the agent reads or writes. */
export interface KubeObjectMeta {
  readonly name?: string;
  readonly generateName?: string;
  readonly namespace?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly creationTimestamp?: string;
}

/** Any API object as JSON. */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata: KubeObjectMeta;
  readonly [field: string]: unknown;
}

/** A list response. */
export interface KubeList<T extends KubeObject = KubeObject> {
  readonly metadata: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items: readonly T[];
}

/** One line of a watch stream. For type ERROR, `object` is a metav1.Status. */
export interface WatchEvent {
  readonly type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
  readonly object: KubeObject & { readonly code?: number; readonly reason?: string; readonly message?: string };
}

/** A request the API server answered with an error status (or a watch ERROR event). */
export class KubeApiError extends Error {
  override readonly name = "KubeApiError";
  constructor(
    readonly method: string,
    readonly path: string,
    /** HTTP status, e.g. 404, 409 (AlreadyExists / Conflict), 410 (Gone), 403. */
    readonly status: number,
    /** metav1.Status reason, e.g. "AlreadyExists", "Expired"; "" when the body was not a Status. */
    readonly reason: string,
    detail: string,
  ) {
    super(`${method.toLowerCase()} ${path}: ${status} ${reason}: ${detail}`);
  }
}

/** True when `e` is a KubeApiError (with `status`, when given). */
export function isKubeApiError(e: unknown, status?: number): e is KubeApiError {
  return e instanceof KubeApiError && (status === undefined || e.status === status);
}

/** Options of one request. */
export interface RequestOptions {
  /** Content type of the body; default application/json (use application/merge-patch+json for PATCH). */
  readonly contentType?: string;
  /** Abort after this long; default 15 s. */
  readonly timeoutMs?: number;
}

/** A connection to one API server. */
export interface KubeClient {
  /** The server URL, e.g. https://10.96.0.1:443. */
  readonly server: string;
  /** One request; resolves to the parsed JSON body, rejects with KubeApiError or a transport Error. */
  request<T>(method: string, path: string, body?: unknown, opts?: RequestOptions): Promise<T>;
  /**
   * Stream a watch of `path` (a collection path); `onEvent` gets each event in
   * order. Resolves when the server ends the stream (timeoutSeconds elapsed),
   * rejects on a transport error or an error status, and resolves at once when
   * `signal` aborts. ERROR events are delivered to `onEvent` like the others.
   */
  watch(path: string, query: Readonly<Record<string, string>>, onEvent: (ev: WatchEvent) => void, signal: AbortSignal): Promise<void>;
}

/**
 * A client from a kubeconfig file, or (null) the in-cluster service account
 * (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount).
 */
export function loadKubeClient(kubeconfig: string | null): KubeClient {
  const kc = new KubeConfig();
  try {
    if (kubeconfig === null) kc.loadFromCluster();
    else kc.loadFromFile(kubeconfig);
  } catch (e: unknown) {
    throw new Error(`load kubeconfig ${kubeconfig ?? "(in-cluster)"}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
  }
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error(`load kubeconfig ${kubeconfig ?? "(in-cluster)"}: no current cluster`);
  const server = cluster.server.replace(/\/+$/, "");
  return new HttpsKubeClient(kc, server);
}

class HttpsKubeClient implements KubeClient {
  constructor(private readonly kc: KubeConfig, readonly server: string) {}

  /** Request options with TLS and auth applied; re-read per request so rotated tokens are picked up. */
  private async options(method: string, url: URL, headers: Record<string, string>): Promise<https.RequestOptions> {
    const opts: https.RequestOptions = { method, headers: { Accept: "application/json", ...headers } };
    await this.kc.applyToHTTPSOptions(opts);
    return opts;
  }

  async request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<T> {
    const url = new URL(this.server + path);
    const payload = body === undefined ? null : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = payload ? { "Content-Type": opts.contentType ?? "application/json" } : {};
    const reqOpts = await this.options(method, url, headers);
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = send(url, reqOpts, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
        res.on("error", reject);
      });
      req.setTimeout(opts.timeoutMs ?? 15_000, () => req.destroy(new Error(`no answer within ${opts.timeoutMs ?? 15_000} ms`)));
      req.on("error", (e: Error) => reject(new Error(`${method.toLowerCase()} ${path}: ${e.message}`, { cause: e })));
      req.end(payload ?? undefined);
    });
    if (status < 200 || status > 299) throw apiError(method, path, status, text);
    return (text === "" ? {} : JSON.parse(text)) as T;
  }

  async watch(path: string, query: Readonly<Record<string, string>>, onEvent: (ev: WatchEvent) => void, signal: AbortSignal): Promise<void> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    url.searchParams.set("watch", "true");
    const reqOpts = await this.options("GET", url, {});
    if (signal.aborted) return;
    await new Promise<void>((resolve, reject) => {
      const req = send(url, reqOpts, (res) => {
        const status = res.statusCode ?? 0;
        if (status !== 200) {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", (e: Error) => reject(e));
          res.on("end", () => reject(apiError("GET", path, status, Buffer.concat(chunks).toString("utf8"))));
          return;
        }
        const lines = createInterface({ input: res, crlfDelay: Infinity });
        lines.on("line", (line) => {
          if (line.trim() === "") return;
          let ev: WatchEvent;
          try {
            ev = JSON.parse(line) as WatchEvent;
          } catch (e: unknown) {
            req.destroy(new Error(`decode watch event: ${e instanceof Error ? e.message : String(e)}`));
            return;
          }
          onEvent(ev);
        });
        // readline re-emits its input's errors (ECONNRESET when the server
        // goes away mid-stream); unhandled, that would crash the agent.
        lines.on("error", (e: Error) => reject(new Error(`watch ${path}: ${e.message}`, { cause: e })));
        res.on("error", (e: Error) => reject(new Error(`watch ${path}: ${e.message}`, { cause: e })));
        res.on("end", () => resolve());
        res.on("close", () => (res.complete ? resolve() : reject(new Error(`watch ${path}: connection closed mid-stream`))));
      });
      // A silent server (network partition) must not hang the watch forever: the
      // server ends each watch after timeoutSeconds, so silence well past that is
      // a dead connection.
      req.setTimeout(10 * 60_000, () => req.destroy(new Error("watch idle for 10 minutes")));
      const onAbort = (): void => {
        req.destroy();
        resolve();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      req.on("close", () => signal.removeEventListener("abort", onAbort));
      req.on("error", (e: Error) => (signal.aborted ? resolve() : reject(new Error(`watch ${path}: ${e.message}`, { cause: e }))));
      req.end();
    });
  }
}

function send(url: URL, opts: https.RequestOptions, onResponse: (res: http.IncomingMessage) => void): http.ClientRequest {
  const mod = url.protocol === "http:" ? http : https;
  return mod.request(url, opts, onResponse);
}

function apiError(method: string, path: string, status: number, text: string): KubeApiError {
  let reason = "";
  let message = text.trim().slice(0, 500);
  try {
    const s = JSON.parse(text) as { reason?: unknown; message?: unknown };
    if (typeof s.reason === "string") reason = s.reason;
    if (typeof s.message === "string") message = s.message;
  } catch {
    // Not a Status body (e.g. a proxy's HTML page); keep the raw text.
  }
  return new KubeApiError(method, path, status, reason, message);
}
