// SPDX-License-Identifier: Apache-2.0
// Four projects: unit (no root), bpf (root, BPF_PROG_TEST_RUN, no netns),
// privileged (root, real netns/veth/packets; files run one at a time because
// they share the kernel's bpffs and tc state), k8s (a real control plane).
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    projects: [
      { test: { name: "unit", include: ["test/unit/**/*.test.ts"] } },
      {
        test: {
          name: "bpf",
          include: ["test/bpf/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: "privileged",
          include: ["test/privileged/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 120_000,
        },
      },
      {
        // Real etcd + kube-apiserver per file (test/helpers/control-plane.ts);
        // files run one at a time so two control planes never compete for the
        // 2 cores during startup.
        test: {
          name: "k8s",
          include: ["test/k8s/**/*.test.ts"],
          fileParallelism: false,
          testTimeout: 120_000,
          hookTimeout: 180_000,
        },
      },
    ],
  },
});
