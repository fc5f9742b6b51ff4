// SPDX-License-Identifier: Apache-2.0
// `twill-agent --install-cni`: put the plugin binary where runtimes look for
// it and write the conflist (atomically: a runtime may read the directory at
// any moment).
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
  const conf = { cniVersion: "1.1.0", name: "twill", plugins: [{ type: "twill-cni", socket: socketPath }, { type: "portmap", capabilities: { portMappings: true } }] };
  fs.writeFileSync(`${conflist}.tmp`, `${JSON.stringify(conf, null, 2)}\n`);
  fs.renameSync(`${conflist}.tmp`, conflist);
  return { plugin, conflist };
}
