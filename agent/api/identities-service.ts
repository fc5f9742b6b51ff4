// SPDX-License-Identifier: Apache-2.0
// twill.v1.Identities handlers: List, Get.
// API: identitiesHandlers(backend).
import type { IdentitiesHandlers } from "../generated/proto/twill/v1/Identities.js";
import type { Identity } from "../generated/proto/twill/v1/Identity.js";
import type { AgentBackend, IdentityInfo } from "./agent-state.js";
import { unary } from "./unary.js";
import { validateGetIdentity } from "./validate.js";

function identityToProto(i: IdentityInfo): Identity {
  return { id: i.id, labels: { ...i.labels }, reserved: i.reserved, endpointCount: i.endpointCount };
}

/** Handlers of the Identities service over backend. */
export function identitiesHandlers(backend: AgentBackend): IdentitiesHandlers {
  return {
    List: unary("identity.list", async () => ({
      identities: (await backend.listIdentities()).map(identityToProto),
    })),
    Get: unary("identity.get", async (req) => identityToProto(await backend.getIdentity(validateGetIdentity(req).id))),
  };
}
