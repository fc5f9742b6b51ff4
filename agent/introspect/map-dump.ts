// SPDX-License-Identifier: Apache-2.0
// `twill map dump <name>`: every datapath map decoded into printable columns
// (the same data bpftool shows, with names resolved).
import type { Daemon } from "../daemon.js";
import { InvalidArgumentError, NotFoundError, type MapDump } from "../api/agent-state.js";
import { formatIp, formatIpBytes } from "../ipam/cidr.js";
import { twillReasonName, TwillDirection } from "../generated/bpf-types.js";

const proto = (p: number): string => ({ 0: "any", 1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP" } as Record<number, string>)[p] ?? String(p);
const mac = (b: Uint8Array): string => [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
const v6 = (b: Uint8Array): string => formatIpBytes(b);
const v4 = (n: number): string => formatIp(4, BigInt(n >>> 0));

/** Map names `twill map dump` accepts. */
export const DUMPABLE_MAPS = ["endpoints", "lxc", "ipcache", "policy", "ct", "metrics"] as const;

/** Decode one map. `endpoint` (container id or ns/pod) is required for "policy". */
export function dumpMap(d: Daemon, name: string, endpoint: string | null): MapDump {
  const m = d.maps;
  switch (name.replace(/^twill_/, "")) {
    case "endpoints":
      return { name, columns: ["IFINDEX", "IDENTITY", "IPV4", "IPV6", "MAC", "NODE_MAC"], rows: m.endpoints.entries().map(([k, v]) => [String(k), String(v.identity), v.flags & 1 ? v4(v.ipv4) : "-", v.flags & 2 ? v6(v.ipv6) : "-", mac(v.mac), mac(v.nodeMac)]) };
    case "lxc":
      return { name, columns: ["ADDRESS", "IFINDEX", "IDENTITY"], rows: m.lxc.entries().map(([a, v]) => [formatIpBytes(a), String(v.ifindex), String(v.identity)]) };
    case "ipcache":
      return { name, columns: ["PREFIX", "IDENTITY", "FLAGS"], rows: m.ipcache.entries().map(([p, v]) => [`${formatIpBytes(p.addr)}/${p.prefixLen}`, String(v.identity), v.flags & 1 ? "local" : ""]) };
    case "policy": {
      if (endpoint === null) throw new InvalidArgumentError("endpoint", "required for map policy (container id or namespace/pod)");
      const r = d.store.get(endpoint) ?? d.store.list().find((x) => `${x.namespace}/${x.podName}` === endpoint);
      if (!r) throw new NotFoundError("endpoint", endpoint);
      const rows = (m.policy.get(r.hostIfindex) ?? []).map(({ key, value }) => {
        const portBits = Math.max(0, key.prefixlen - 48);
        const lo = key.prefixlen >= 48 ? key.dport : 0;
        const hi = key.prefixlen >= 48 ? lo + (1 << (16 - portBits)) - 1 : 0;
        const rule = d.desired?.ruleRefs.lookup(value.ruleRef);
        return [
          key.direction === TwillDirection.FROM_POD ? "egress" : "ingress",
          key.identity === 0 ? "any" : String(key.identity),
          key.prefixlen >= 48 ? proto(key.protocol) : "any",
          key.prefixlen <= 48 ? "any" : lo === hi ? String(lo) : `${lo}-${hi}`,
          rule ? `${rule.namespace}/${rule.policy} ${rule.direction}[${rule.index}]` : value.ruleRef === 0 ? "(default)" : String(value.ruleRef),
        ];
      });
      return { name, columns: ["DIRECTION", "IDENTITY", "PROTOCOL", "PORT", "RULE"], rows };
    }
    case "ct": {
      const now = process.hrtime.bigint();
      const row = (s: string, dst: string, k: { sport: number; dport: number; protocol: number }, v: { srcIdentity: number; dstIdentity: number; flags: number; packets: bigint; lastSeenNs: bigint }): string[] =>
        [proto(k.protocol), `${s}:${k.sport}`, `${dst}:${k.dport}`, String(v.srcIdentity), String(v.dstIdentity), v.flags & 1 ? "established" : "new", String(v.packets), `${(Number(now - v.lastSeenNs) / 1e9).toFixed(0)}s`];
      return {
        name, columns: ["PROTO", "SOURCE", "DESTINATION", "SRC_ID", "DST_ID", "STATE", "PACKETS", "IDLE"],
        rows: [
          ...m.ct4.map.entries().map(([k, v]) => row(v4(k.saddr), v4(k.daddr), k, v)),
          ...m.ct6.map.entries().map(([k, v]) => row(`[${v6(k.saddr)}]`, `[${v6(k.daddr)}]`, k, v)),
        ],
      };
    }
    case "metrics":
      return { name, columns: ["DIRECTION", "REASON", "PACKETS", "BYTES"], rows: m.metrics.read().map((s) => [s.direction === 0 ? "from-pod" : "to-pod", twillReasonName(s.reason) ?? String(s.reason), String(s.packets), String(s.bytes)]) };
    default:
      // A bad name is a malformed request (like an unknown flag), not a missing object.
      throw new InvalidArgumentError("name", `unknown map ${JSON.stringify(name)} (known: ${DUMPABLE_MAPS.join(", ")})`);
  }
}
