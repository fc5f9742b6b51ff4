// SPDX-License-Identifier: Apache-2.0
// The one shape in which cluster state reaches the agent core, whichever
// source produced it: the standalone manifest directory (manifest-dir.ts)
// or the Kubernetes API server (kube-source.ts). A source delivers complete
// snapshots; the core diffs them. Errors are per object and never erase the
// last valid state of that object.
import type { Namespace, NetworkPolicy, Pod } from "./manifest-types.js";

/** A problem with one object, reported in status and as a policy condition. */
export interface SourceError {
  /** "file.yaml#2" or "NetworkPolicy ns/name". */
  readonly source: string;
  readonly message: string;
}

/** All valid objects known at one moment. */
export interface ClusterSnapshot {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly policies: readonly NetworkPolicy[];
  readonly errors: readonly SourceError[];
}

/** A running source of snapshots. */
export interface ClusterSource {
  /** "manifests:/etc/twill/manifests" or "kubernetes:https://..." */
  readonly description: string;
  /** Whether the last connection attempt succeeded (Kubernetes) / the dir is readable. */
  healthy(): boolean;
  stop(): void;
}
