// SPDX-License-Identifier: Apache-2.0
// CLI formatting: tables, key/value blocks, colour rules, flow lines.
import { describe, expect, it } from "vitest";
import { renderFlowLine, renderLostLine } from "../../cli/commands/observe.js";
import { parseTracePeer } from "../../cli/commands/policy.js";
import { colorsFor, formatKeyValues, formatLabels, formatTable, stripAnsi, type CliIo } from "../../cli/output.js";
import type { Flow__Output } from "../../agent/generated/proto/twill/v1/Flow.js";

const io = (isTty: boolean, env: Record<string, string | undefined> = {}): CliIo => ({
  stdout: { write: () => true },
  stderr: { write: () => true },
  isTty,
  env,
});

describe("formatTable", () => {
  it("aligns columns, prints - for empty cells, no trailing spaces", () => {
    expect(formatTable(["ID", "NAME", "NOTE"], [["1", "a", ""], ["1000", "longer", "x"]])).toBe(
      "ID     NAME     NOTE\n" + "1      a        -\n" + "1000   longer   x\n",
    );
  });

  it("ignores colour codes when measuring widths", () => {
    const c = colorsFor(io(true));
    const out = formatTable(["V", "N"], [[c.green("OK"), "1"], ["DENIED", "2"]]);
    expect(stripAnsi(out)).toBe("V        N\nOK       1\nDENIED   2\n");
  });
});

describe("colour", () => {
  it.each([
    { name: "TTY", tty: true, env: {}, coloured: true },
    { name: "pipe", tty: false, env: {}, coloured: false },
    { name: "TTY with NO_COLOR", tty: true, env: { NO_COLOR: "1" }, coloured: false },
  ])("$name", ({ tty, env, coloured }) => {
    expect(colorsFor(io(tty, env)).red("x") !== "x").toBe(coloured);
  });
});

describe("small formatters", () => {
  it("key/values align keys and print - for empty values", () => {
    expect(formatKeyValues([["Node", "a"], ["Identity", ""]])).toBe("Node:       a\nIdentity:   -\n");
  });

  it("labels are sorted by key", () => {
    expect(formatLabels({ b: "2", a: "1" })).toBe("a=1, b=2");
  });
});

describe("flow lines", () => {
  const flow: Flow__Output = {
    time: "2026-01-01T00:00:00.123456789Z",
    type: "drop",
    source: { ip: "10.244.0.5", port: 40000, identity: 256, namespace: "default", pod: "client", labels: {} },
    destination: { ip: "198.18.0.1", port: 443, identity: 2, namespace: "", pod: "", labels: {} },
    family: "IP_FAMILY_IPV4",
    protocol: "PROTOCOL_TCP",
    direction: "DIRECTION_EGRESS",
    verdict: "VERDICT_DROPPED",
    dropReason: "POLICY",
    ruleRef: 0,
    length: 60,
    ifindex: 3,
  };

  it("names pods, falls back to IPs, shows the drop reason", () => {
    expect(renderFlowLine(flow, colorsFor(io(false)))).toBe(
      "2026-01-01T00:00:00.123Z  default/client:40000 (id 256) -> 198.18.0.1:443 (id 2)  TCP  EGRESS  DROPPED (POLICY)",
    );
  });

  it("ICMP has no ports; a TTY gets a coloured verdict", () => {
    const line = renderFlowLine({ ...flow, protocol: "PROTOCOL_ICMP", verdict: "VERDICT_FORWARDED", dropReason: "" }, colorsFor(io(true)));
    expect(line).toContain("\u001b[32mFORWARDED\u001b[0m");
    expect(stripAnsi(line)).toContain("default/client (id 256) -> 198.18.0.1 (id 2)  ICMP");
  });

  it("lost notice says why", () => {
    expect(renderLostLine({ count: "7", source: "LOST_SOURCE_CLIENT" }, colorsFor(io(false)))).toBe(
      "EVENTS LOST: 7 (this client read too slowly)",
    );
  });
});

describe("trace peers", () => {
  it.each([
    { name: "pod", input: "default/web", want: { pod: { namespace: "default", name: "web" } } },
    { name: "IPv4", input: "198.18.0.1", want: { ip: "198.18.0.1" } },
    { name: "IPv6", input: "fd00:10:244::6", want: { ip: "fd00:10:244::6" } },
  ])("$name", ({ input, want }) => {
    expect(parseTracePeer("--to", input)).toEqual(want);
  });

  it("rejects anything else as a usage error (exit 2)", () => {
    expect(() => parseTracePeer("--from", "web")).toThrow(expect.objectContaining({ exitCode: 2, message: '--from: "web" is neither NAMESPACE/POD nor an IP address' }));
  });
});
