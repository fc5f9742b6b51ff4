// SPDX-License-Identifier: Apache-2.0
// Reserved security identities and identity number ranges.
//
// API: `ReservedIdentity` (ANY, HOST, WORLD, UNMANAGED, REMOTE_NODE,
// KUBE_APISERVER), `IDENTITY_FIRST_LOCAL`, `IDENTITY_LAST_LOCAL`,
// `IDENTITY_CIDR_BASE`, `IDENTITY_CIDR_LAST`, `isCidrIdentity`.
// The numbers come from enum twill_identity_reserved (bpf/lib/common_types.h)
// through the generated bpf-types.ts; nothing is mirrored by hand.
import { TwillIdentityReserved } from "../generated/bpf-types.js";

/** Identities with a fixed meaning. ANY (0) never names a peer: in a policy key it means "any identity". */
export const ReservedIdentity = {
  ANY: TwillIdentityReserved.ANY,
  HOST: TwillIdentityReserved.HOST,
  WORLD: TwillIdentityReserved.WORLD,
  UNMANAGED: TwillIdentityReserved.UNMANAGED,
  REMOTE_NODE: TwillIdentityReserved.REMOTE_NODE,
  KUBE_APISERVER: TwillIdentityReserved.KUBE_APISERVER,
} as const;

/** First label-derived (pod) identity: TWILL_IDENTITY_FIRST_LOCAL. */
export const IDENTITY_FIRST_LOCAL: number = TwillIdentityReserved.FIRST_LOCAL;
/** Last label-derived identity: just below the CIDR range. */
export const IDENTITY_LAST_LOCAL: number = TwillIdentityReserved.CIDR_BASE - 1;
/** First CIDR identity: TWILL_IDENTITY_CIDR_BASE (1 << 24). */
export const IDENTITY_CIDR_BASE: number = TwillIdentityReserved.CIDR_BASE;
/** Last CIDR identity (identities are u32). */
export const IDENTITY_CIDR_LAST = 0xffffffff;

/** Whether the identity number lies in the CIDR identity range. */
export function isCidrIdentity(identity: number): boolean {
  return identity >= IDENTITY_CIDR_BASE && identity <= IDENTITY_CIDR_LAST;
}
