// SPDX-License-Identifier: Apache-2.0
// Reserved security identities and identity number ranges.
//
// API: `ReservedIdentity` (ANY, HOST, WORLD, UNMANAGED, REMOTE_NODE,
// KUBE_APISERVER), `IDENTITY_FIRST_LOCAL`, `IDENTITY_LAST_LOCAL`,
// `IDENTITY_CIDR_BASE`, `IDENTITY_CIDR_LAST`, `isCidrIdentity`.
// The numbers are enum twill_identity_reserved of bpf/lib/common_types.h;
// test/unit/identity.test.ts reads that header and fails if they drift (the
// generated bpf-types.ts can replace these once it exists).

/** Identities with a fixed meaning. ANY (0) never names a peer: in a policy key it means "any identity". */
export const ReservedIdentity = {
  ANY: 0,
  HOST: 1,
  WORLD: 2,
  UNMANAGED: 3,
  REMOTE_NODE: 6,
  KUBE_APISERVER: 7,
} as const;

/** First label-derived (pod) identity: TWILL_IDENTITY_FIRST_LOCAL. */
export const IDENTITY_FIRST_LOCAL = 256;
/** Last label-derived identity: just below the CIDR range. */
export const IDENTITY_LAST_LOCAL = (1 << 24) - 1;
/** First CIDR identity: TWILL_IDENTITY_CIDR_BASE (1 << 24). */
export const IDENTITY_CIDR_BASE = 1 << 24;
/** Last CIDR identity (identities are u32). */
export const IDENTITY_CIDR_LAST = 0xffffffff;

/** Whether the identity number lies in the CIDR identity range. */
export function isCidrIdentity(identity: number): boolean {
  return identity >= IDENTITY_CIDR_BASE && identity <= IDENTITY_CIDR_LAST;
}
