// SPDX-License-Identifier: Apache-2.0
// The module boundaries the house style sets, checked on the source: pure
// modules stay pure, and FFI stays in the two files that own it.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = path.resolve(import.meta.dirname, "../..");

function tsFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { recursive: true })
    .map(String).filter((f) => f.endsWith(".ts")).map((f) => path.join(dir, f));
}

function importsOf(file: string): string[] {
  const text = fs.readFileSync(path.join(ROOT, file), "utf8");
  return [...text.matchAll(/^\s*(?:import|export)[^"']*from\s+["']([^"']+)["']/gm), ...text.matchAll(/^\s*import\s+["']([^"']+)["']/gm), ...text.matchAll(/import\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1] ?? "");
}

describe("layering", () => {
  it.each([
    { name: "policy/ is pure", dir: "agent/policy", banned: /\/(native|maps|loader|netlink|api|reconcile)\/|^koffi$|^node:fs/ },
    { name: "identity/ is pure except its file store", dir: "agent/identity", banned: /\/(native|maps|loader|netlink|api|reconcile)\/|^koffi$/ },
    { name: "maps/ does not reach up into the agent core", dir: "agent/maps", banned: /\/(reconcile|api|k8s|introspect|endpoint)\/|daemon/ },
  ])("$name", ({ dir, banned }) => {
    const offenders = tsFiles(dir).flatMap((f) => importsOf(f).filter((i) => banned.test(i)).map((i) => `${f} imports ${i}`));
    expect(offenders).toEqual([]);
  });

  it("koffi is imported only by agent/native and agent/netlink/libc.ts", () => {
    const all = [...tsFiles("agent"), ...tsFiles("cni"), ...tsFiles("cli")];
    const users = all.filter((f) => importsOf(f).includes("koffi")).sort();
    expect(users.every((f) => f.startsWith("agent/native/") || f === "agent/netlink/libc.ts")).toBe(true);
    expect(users.length).toBeGreaterThan(0);
  });

  it("@kubernetes/client-node is imported only by agent/k8s/kube-client.ts", () => {
    const users = tsFiles("agent").filter((f) => importsOf(f).includes("@kubernetes/client-node"));
    expect(users).toEqual(["agent/k8s/kube-client.ts"]);
  });
});
