// SPDX-License-Identifier: Apache-2.0
// twill.v1.Datapath handlers: DumpMap.
// API: datapathHandlers(backend).
import type { DatapathHandlers } from "../generated/proto/twill/v1/Datapath.js";
import type { AgentBackend } from "./agent-state.js";
import { unary } from "./unary.js";
import { validateDumpMap } from "./validate.js";

/** Handlers of the Datapath service over backend. */
export function datapathHandlers(backend: AgentBackend): DatapathHandlers {
  return {
    DumpMap: unary("datapath.dumpMap", async (req) => {
      const { name, endpoint } = validateDumpMap(req);
      const d = await backend.dumpMap(name, endpoint);
      return { name: d.name, columns: [...d.columns], rows: d.rows.map((r) => ({ values: [...r] })) };
    }),
  };
}
