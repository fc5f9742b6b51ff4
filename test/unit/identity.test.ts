// SPDX-License-Identifier: Apache-2.0
import * as fs from "node:fs";
import { describe, expect, it } from "vitest";
import { CidrIdentityAllocator, IdentityAllocator, IdentityExhaustedError, memoryIdentityStore } from "../../agent/identity/allocator.js";
import { formatSecurityLabels, labelSetKey, parseLabelSetKey, securityLabelsOf } from "../../agent/identity/labels.js";
import { IDENTITY_CIDR_BASE, IDENTITY_FIRST_LOCAL, ReservedIdentity } from "../../agent/identity/reserved.js";

describe("reserved identities", () => {
  it("match enum twill_identity_reserved in bpf/lib/common_types.h", () => {
    const header = fs.readFileSync(new URL("../../bpf/lib/common_types.h", import.meta.url), "utf8");
    const value = (name: string): number => {
      const m = new RegExp(`TWILL_IDENTITY_${name}\\s*=\\s*(\\d+)`).exec(header);
      if (!m?.[1]) throw new Error(`no TWILL_IDENTITY_${name} in common_types.h`);
      return Number(m[1]);
    };
    for (const [name, n] of Object.entries(ReservedIdentity)) expect({ name, n }).toEqual({ name, n: value(name) });
    expect(IDENTITY_FIRST_LOCAL).toBe(value("FIRST_LOCAL"));
    expect(IDENTITY_CIDR_BASE).toBe(value("CIDR_BASE"));
  });
});

describe("security labels", () => {
  it("keep pod labels, namespace labels and the namespace, and drop per-replica labels", () => {
    const l = securityLabelsOf("shop", { app: "web", "pod-template-hash": "abc", "io.kubernetes.pod.namespace": "kube-system" }, { team: "a" });
    expect(formatSecurityLabels(l)).toEqual([
      "k8s:app=web",
      "k8s:io.kubernetes.pod.namespace=shop",
      "k8s:ns-label:kubernetes.io/metadata.name=shop",
      "k8s:ns-label:team=a",
    ]);
  });

  it("give one key whatever the insertion order, and the key parses back", () => {
    const a = securityLabelsOf("n", { b: "2", a: "1" }, { y: "", x: "=,\"" });
    const b = securityLabelsOf("n", { a: "1", b: "2" }, { x: "=,\"", y: "" });
    expect(labelSetKey(a)).toBe(labelSetKey(b));
    expect(parseLabelSetKey(labelSetKey(a))).toEqual(a);
  });

  it.each([
    { name: "namespace", a: securityLabelsOf("n1", { app: "x" }, {}), b: securityLabelsOf("n2", { app: "x" }, {}) },
    { name: "pod label vs namespace label", a: securityLabelsOf("n", { team: "a" }, {}), b: securityLabelsOf("n", {}, { team: "a" }) },
    { name: "value", a: securityLabelsOf("n", { app: "x" }, {}), b: securityLabelsOf("n", { app: "y" }, {}) },
  ])("tell label sets apart by $name", ({ a, b }) => {
    expect(labelSetKey(a)).not.toBe(labelSetKey(b));
  });
});

describe("IdentityAllocator", () => {
  const web = securityLabelsOf("default", { app: "web" }, {});
  const db = securityLabelsOf("default", { app: "db" }, {});
  const api = securityLabelsOf("default", { app: "api" }, {});

  it("gives the same number to the same labels and frees it after the last release", () => {
    const a = new IdentityAllocator();
    expect(a.allocate(web)).toEqual({ identity: 256, created: true });
    expect(a.allocate(securityLabelsOf("default", { app: "web", "pod-template-hash": "z" }, {}))).toEqual({ identity: 256, created: false });
    expect(a.allocate(db)).toEqual({ identity: 257, created: true });
    expect(a.release(256)).toBe(false);
    expect(a.identityOf(web)).toBe(256);
    expect(a.release(256)).toBe(true);
    expect(a.identityOf(web)).toBeNull();
    expect(a.labelsOf(257)).toEqual(db);
    expect(a.release(999)).toBe(false);
  });

  it("does not hand a released number to a new label set before the others", () => {
    const a = new IdentityAllocator(null, { first: 256, last: 258 });
    a.allocate(web);
    a.allocate(db);
    a.release(256);
    expect(a.allocate(api).identity).toBe(258);
    expect(a.allocate(web).identity).toBe(256); // wrapped around to the only free number
    expect(() => a.allocate(securityLabelsOf("x", {}, {}))).toThrow(IdentityExhaustedError);
  });

  it("keeps numbers across a restart until the restored ones are pruned", () => {
    const store = memoryIdentityStore();
    const a = new IdentityAllocator(store);
    a.allocate(web);
    a.allocate(db);
    expect([...store.table.values()]).toEqual([256, 257]);

    const b = new IdentityAllocator(store);
    expect(b.restored()).toEqual([256, 257]);
    expect(b.allocate(db)).toEqual({ identity: 257, created: false });
    expect(b.allocate(api).identity).toBe(258); // restored numbers are not reused
    expect(b.pruneRestored()).toEqual([256]);
    expect(b.identityOf(web)).toBeNull();
    expect([...store.table.values()].sort()).toEqual([257, 258]);
  });

  it("ignores garbage in the store", () => {
    const store = memoryIdentityStore(new Map([["not json", 300], [labelSetKey(web), 5], [labelSetKey(db), 300]]));
    const a = new IdentityAllocator(store);
    expect(a.restored()).toEqual([300]);
    expect(a.allocate(web).identity).toBe(301);
  });
});

describe("CidrIdentityAllocator", () => {
  it("numbers CIDRs from 1<<24, one per canonical CIDR, reference counted", () => {
    const a = new CidrIdentityAllocator();
    const x = a.allocate("198.18.0.0/15");
    expect(x).toEqual({ identity: 1 << 24, created: true });
    expect(a.allocate("2001:db8:0::/32")).toEqual({ identity: (1 << 24) + 1, created: true });
    expect(a.allocate("2001:db8::/32")).toEqual({ identity: (1 << 24) + 1, created: false });
    expect(a.cidrOf((1 << 24) + 1)).toBe("2001:db8::/32");
    expect(a.release(1 << 24)).toBe(true);
    expect(a.identityOf("198.18.0.0/15")).toBeNull();
    expect(() => a.allocate("198.18.0.1/15")).toThrow(/host bits/);
  });
});
