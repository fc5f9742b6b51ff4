// SPDX-License-Identifier: Apache-2.0
// `twill-agent --install-cni`: put the plugin binary where runtimes look for
// it and write the conflist (atomically: a runtime may read the directory at
// any moment). The conflist's cniVersion is the newest one that twill-cni and
// every chained plugin speak: libcni hands the list's version to each plugin,
// and a chained portmap older than spec 1.1.0 (Debian's containernetworking-
// plugins 1.1.1) refuses it, which would fail every pod.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

/** Name of the conflist file; "05-" sorts it before most other networks. */
export const CONFLIST_NAME = "05-twill.conflist";

/** Path of the built plugin next to the package (build/twill-cni). */
export function builtPluginPath(): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = here.includes(`${path.sep}dist${path.sep}`) ? path.resolve(here, "../..") : path.resolve(here, "..");
  return path.join(root, "build", "twill-cni");
}

/** Versions twill-cni speaks that a conflist may name, newest first. */
const CONFLIST_VERSIONS = ["1.1.0", "1.0.0", "0.4.0"] as const;
/** Where runtimes usually look for plugins, after the install's own bin dir. */
const SYSTEM_PLUGIN_DIRS = ["/opt/cni/bin", "/usr/lib/cni", "/usr/libexec/cni"];

/** Spec versions a plugin binary reports (CNI VERSION), or null if not found. */
function pluginVersions(type: string, dirs: readonly string[]): string[] | null {
  const file = dirs.map((d) => path.join(d, type)).find((f) => fs.existsSync(f));
  if (file === undefined) return null;
  const r = spawnSync(file, [], { input: '{"cniVersion":"1.1.0"}', env: { CNI_COMMAND: "VERSION" }, encoding: "utf8", timeout: 10_000 });
  try {
    const j = JSON.parse(r.stdout) as { supportedVersions?: unknown };
    return Array.isArray(j.supportedVersions) ? j.supportedVersions.filter((v): v is string => typeof v === "string") : null;
  } catch {
    return null;
  }
}

/** Newest conflist version every chained plugin found in `dirs` supports (1.1.0 if none is found). */
export function conflistVersion(chained: readonly string[], dirs: readonly string[]): string {
  const known = chained.map((t) => pluginVersions(t, dirs)).filter((v): v is string[] => v !== null);
  return CONFLIST_VERSIONS.find((v) => known.every((k) => k.includes(v))) ?? "1.0.0";
}

/** Install; returns the paths written. */
export function installCni(binDir: string, confDir: string, socketPath: string, source = builtPluginPath()): { plugin: string; conflist: string } {
  if (!fs.existsSync(source)) throw new Error(`install cni: ${source} not found (run npm run build:cni)`);
  fs.mkdirSync(binDir, { recursive: true });
  fs.mkdirSync(confDir, { recursive: true });
  const plugin = path.join(binDir, "twill-cni");
  fs.copyFileSync(source, `${plugin}.tmp`);
  fs.chmodSync(`${plugin}.tmp`, 0o755);
  fs.renameSync(`${plugin}.tmp`, plugin);
  const conflist = path.join(confDir, CONFLIST_NAME);
  const cniVersion = conflistVersion(["portmap"], [binDir, ...SYSTEM_PLUGIN_DIRS]);
  const conf = { cniVersion, name: "twill", plugins: [{ type: "twill-cni", socket: socketPath }, { type: "portmap", capabilities: { portMappings: true } }] };
  fs.writeFileSync(`${conflist}.tmp`, `${JSON.stringify(conf, null, 2)}\n`);
  fs.renameSync(`${conflist}.tmp`, conflist);
  return { plugin, conflist };
}
