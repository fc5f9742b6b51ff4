#!/usr/bin/env node
// SPDX-License-Identifier: Apache-2.0
// A tiny traffic tool for the demo and the tests, run inside a pod's netns
// with `ip netns exec`: plain Node, no dependencies, so it starts anywhere.
//   netprobe.mjs serve <port>...            echo on TCP and UDP, IPv4 and IPv6
//   netprobe.mjs connect tcp|udp <ip> <port> [timeoutMs]
//       prints "ok" and exits 0 if the peer answered, prints the reason and
//       exits 1 otherwise (timeout = dropped, refused = reached but closed).
import net from "node:net";
import dgram from "node:dgram";

const [mode, ...args] = process.argv.slice(2);

if (mode === "serve") {
  for (const p of args.map(Number)) {
    net.createServer((s) => s.on("data", (d) => s.end(d)).on("error", () => {})).listen({ port: p, host: "::", ipv6Only: false });
    for (const type of ["udp4", "udp6"]) {
      const u = dgram.createSocket({ type, ipv6Only: type === "udp6" });
      u.on("message", (msg, rinfo) => u.send(msg, rinfo.port, rinfo.address));
      u.bind(p, type === "udp4" ? "0.0.0.0" : "::");
    }
  }
  process.stdout.write("ready\n");
} else if (mode === "connect") {
  const [proto, host, portText, timeoutText] = args;
  const port = Number(portText);
  const timeoutMs = Number(timeoutText ?? 1000);
  const done = (ok, why) => { process.stdout.write(ok ? "ok\n" : `${why}\n`); process.exit(ok ? 0 : 1); };
  setTimeout(() => done(false, "timeout"), timeoutMs).unref();
  if (proto === "tcp") {
    const s = net.connect({ host, port }, () => s.write("ping"));
    s.on("data", () => done(true));
    s.on("error", (e) => done(false, e.code === "ECONNREFUSED" ? "refused" : String(e.code ?? e.message)));
  } else {
    const u = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    u.on("message", () => done(true));
    u.on("error", (e) => done(false, String(e.code ?? e.message)));
    u.send("ping", port, host);
  }
} else {
  process.stderr.write("usage: netprobe.mjs serve <port>... | connect tcp|udp <ip> <port> [timeoutMs]\n");
  process.exit(2);
}
