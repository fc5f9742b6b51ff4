// SPDX-License-Identifier: Apache-2.0
// Standalone mode's ClusterSource: the manifest directory's raw objects,
// validated into Namespaces, Pods and NetworkPolicies. An invalid object is
// reported (naming file and field) and its last valid version stays in force.
import type { Namespace, NetworkPolicy, Pod } from "./manifest-types.js";
import { validateNamespace, validateNetworkPolicy, validatePod } from "./manifest-types.js";
import { ManifestDir, type RawObject } from "./manifest-dir.js";
import type { ClusterSnapshot, ClusterSource, SourceError } from "./cluster-source.js";

const keyOf = (o: RawObject): string => `${o.kind}/${o.metadata.namespace ?? "default"}/${o.metadata.name}`;

/** Watch `dir` and deliver validated snapshots (the first one synchronously). */
export function startStandaloneSource(dir: string, onSnapshot: (s: ClusterSnapshot) => void): ClusterSource {
  const lastValid = new Map<string, Namespace | Pod | NetworkPolicy>();
  let ok = true;
  const watcher = ManifestDir.start(dir, (snap) => {
    const errors: SourceError[] = snap.errors.map((e) => ({ source: e.source, message: e.message }));
    const namespaces: Namespace[] = [];
    const pods: Pod[] = [];
    const policies: NetworkPolicy[] = [];
    const present = new Set<string>();
    for (const o of snap.objects) {
      const key = keyOf(o);
      present.add(key);
      let v: { value: Namespace | Pod | NetworkPolicy | null; errors: readonly { message: string }[] };
      if (o.kind === "Namespace") v = validateNamespace(o, o.source);
      else if (o.kind === "Pod") v = validatePod(o, o.source);
      else if (o.kind === "NetworkPolicy") v = validateNetworkPolicy(o, o.source);
      else continue; // other kinds (Deployments, Services...) are not ours
      if (v.value) lastValid.set(key, v.value);
      for (const e of v.errors) errors.push({ source: o.source, message: e.message });
      const keep = lastValid.get(key);
      if (!keep) continue;
      if (o.kind === "Namespace") namespaces.push(keep as Namespace);
      else if (o.kind === "Pod") pods.push(keep as Pod);
      else policies.push(keep as NetworkPolicy);
    }
    // An object whose file failed to parse stays in force through lastValid
    // only while its file exists; ManifestDir already kept its raw objects.
    for (const k of [...lastValid.keys()]) if (!present.has(k)) lastValid.delete(k);
    ok = snap.errors.length === 0;
    onSnapshot({ namespaces, pods, policies, errors });
  });
  return { description: `manifests:${dir}`, healthy: () => ok, stop: () => watcher.stop() };
}
