// SPDX-License-Identifier: Apache-2.0
// The one shape in which cluster state reaches the agent core, whichever
// source produced it: the standalone manifest directory (manifest-dir.ts)
// or the Kubernetes API server (kube-source.ts). A source delivers complete
// snapshots; one that knows what changed since its previous snapshot also
// says so (`changes`), which lets the core skip diffing 100k+ objects per
// event. Errors are per object and never erase the last valid state of that
// object.
import type { Namespace, NetworkPolicy, Pod } from "./manifest-types.js";

/** A problem with one object, reported in status and as a policy condition. */
export interface SourceError {
  /** "file.yaml#2" or "NetworkPolicy ns/name". */
  readonly source: string;
  readonly message: string;
}

/** Namespaced object key "namespace/name" (Namespaces: just the name). */
export type ObjectKey = string;

/** Objects added or replaced, and keys of objects gone, since a source's previous snapshot. */
export interface ObjectChanges<T> {
  readonly upserted: readonly T[];
  readonly removed: readonly ObjectKey[];
}

/** Everything that differs from the same source's previous snapshot. */
export interface ClusterChanges {
  readonly namespaces: ObjectChanges<Namespace>;
  readonly pods: ObjectChanges<Pod>;
  readonly policies: ObjectChanges<NetworkPolicy>;
}

/** All valid objects known at one moment. */
export interface ClusterSnapshot {
  readonly namespaces: readonly Namespace[];
  readonly pods: readonly Pod[];
  readonly policies: readonly NetworkPolicy[];
  readonly errors: readonly SourceError[];
  /** What changed since this source's previous snapshot; absent when unknown (then consumers diff). */
  readonly changes?: ClusterChanges;
}

/** Merge `next` into `acc` (both relative to consecutive snapshots of one source). */
export function mergeClusterChanges(acc: ClusterChanges, next: ClusterChanges): ClusterChanges {
  const merge = <T>(a: ObjectChanges<T>, b: ObjectChanges<T>, keyOf: (o: T) => ObjectKey): ObjectChanges<T> => {
    const up = new Map<ObjectKey, T>();
    const gone = new Set<ObjectKey>(a.removed);
    for (const o of a.upserted) up.set(keyOf(o), o);
    for (const k of b.removed) {
      up.delete(k);
      gone.add(k);
    }
    for (const o of b.upserted) {
      const k = keyOf(o);
      up.set(k, o);
      gone.delete(k);
    }
    return { upserted: [...up.values()], removed: [...gone] };
  };
  const nsKey = (o: { metadata: { namespace?: string; name: string } }): ObjectKey => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
  return {
    namespaces: merge(acc.namespaces, next.namespaces, (n) => n.metadata.name),
    pods: merge(acc.pods, next.pods, nsKey),
    policies: merge(acc.policies, next.policies, nsKey),
  };
}

/** A running source of snapshots. */
export interface ClusterSource {
  /** "manifests:/etc/twill/manifests" or "kubernetes:https://..." */
  readonly description: string;
  /** Whether the last connection attempt succeeded (Kubernetes) / the dir is readable. */
  healthy(): boolean;
  stop(): void;
}
