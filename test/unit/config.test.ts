// SPDX-License-Identifier: Apache-2.0
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig } from "../../agent/config/config.js";

describe("parseConfig", () => {
  it("applies the documented defaults", () => {
    const c = parseConfig([], {});
    expect(c.bpfRoot).toBe("/sys/fs/bpf/twill");
    expect(c.stateDir).toBe("/var/run/twill");
    expect(c.socketPath).toBe("/var/run/twill/agent.sock");
    expect(c.podCidrs.map((x) => x.text)).toEqual(["10.244.0.0/24", "fd00:10:244::/64"]);
    expect(c.manifestsDir).toBeNull();
    expect(c.metricsAddr).toBeNull();
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("takes repeatable pod CIDRs of both families and NODE_NAME", () => {
    const c = parseConfig(["--pod-cidr", "10.244.3.0/24", "--pod-cidr", "fd00:10:244:3::/64", "--manifests", "/m"], { NODE_NAME: "n1" });
    expect(c.podCidrs.map((x) => [x.family, x.text])).toEqual([[4, "10.244.3.0/24"], [6, "fd00:10:244:3::/64"]]);
    expect(c.nodeName).toBe("n1");
    expect(c.manifestsDir).toBe("/m");
  });

  it.each([
    { name: "host bits in a pod CIDR", argv: ["--pod-cidr", "10.244.0.1/24"], err: /--pod-cidr: "10.244.0.1\/24": host bits are set/ },
    { name: "not a CIDR", argv: ["--pod-cidr", "nope"], err: /--pod-cidr/ },
    { name: "bad metrics address", argv: ["--metrics-addr", "localhost"], err: /--metrics-addr: "localhost" is not host:port/ },
    { name: "unknown log level", argv: ["--log-level", "loud"], err: /invalid arguments/ },
    { name: "unknown flag", argv: ["--bogus"], err: /unknown option '--bogus'/ },
  ])("rejects $name with a message naming the flag", ({ argv, err }) => {
    expect(() => parseConfig(argv, {})).toThrow(ConfigError);
    expect(() => parseConfig(argv, {})).toThrow(err);
  });
});
