// SPDX-License-Identifier: Apache-2.0
// CNI VERSION: the spec versions this plugin speaks. Needs no config beyond an
// optional cniVersion and never touches the agent or the kernel.
//
// API: cmdVersion(stdinText).
import { versionJson } from "../version.js";

/** VERSION output for whatever the runtime sent on stdin (may be empty). */
export function cmdVersion(stdinText: string): Record<string, unknown> {
  let asked: string | null = null;
  try {
    const j: unknown = JSON.parse(stdinText);
    if (typeof j === "object" && j !== null && typeof (j as Record<string, unknown>)["cniVersion"] === "string") {
      asked = (j as Record<string, string>)["cniVersion"] ?? null;
    }
  } catch {
    // VERSION must answer even without a config.
  }
  return versionJson(asked);
}
