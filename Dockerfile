# SPDX-License-Identifier: Apache-2.0
# The Twill image: twill-agent, the twill CLI and the twill-cni plugin (which
# the DaemonSet's init container copies to the host's /opt/cni/bin).
#
#   docker build -t ghcr.io/twill-io/twill:0.1.0 .
#
# Builder: the TypeScript build (tsc), the single-file CNI plugin (bun
# --compile) and a compile check of the BPF object with the same clang the
# agent uses. Runtime: Node 20 on Debian bookworm-slim with libbpf1 (loaded
# through koffi) and clang/llvm, because the agent compiles lxc.bpf.c on the
# node at start (per-node constants, compile cache in /var/run/twill).

ARG NODE_MAJOR=20

FROM node:${NODE_MAJOR}-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang llvm libbpf-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# bun (devDependency) builds the CNI plugin; install scripts are needed for
# koffi's prebuilt native module and bun's binary.
RUN npm ci
COPY tsconfig.json ./
COPY agent agent
COPY cni cni
COPY cli cli
COPY proto proto
COPY bpf bpf
COPY hack/build-cni.sh hack/build-cni.sh
RUN npx tsc -p tsconfig.json \
 && bash hack/build-cni.sh build/twill-cni \
 && clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I bpf -c bpf/lxc.bpf.c -o /tmp/lxc.bpf.o
# Runtime dependencies only.
RUN npm ci --omit=dev --ignore-scripts=false

FROM debian:bookworm-slim AS runtime
ARG NODE_MAJOR
# Node from the builder's official image (same major as the build), so the
# runtime needs no extra apt repository.
COPY --from=builder /usr/local/bin/node /usr/local/bin/node
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libbpf1 clang llvm iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/twill
COPY --from=builder /src/package.json ./package.json
COPY --from=builder /src/node_modules ./node_modules
COPY --from=builder /src/dist ./dist
COPY --from=builder /src/proto ./proto
COPY --from=builder /src/bpf ./bpf
COPY --from=builder /src/build/twill-cni ./build/twill-cni
RUN printf '#!/bin/sh\nexec /usr/local/bin/node /opt/twill/dist/agent/main.js "$@"\n' >/usr/local/bin/twill-agent \
 && printf '#!/bin/sh\nexec /usr/local/bin/node /opt/twill/dist/cli/main.js "$@"\n' >/usr/local/bin/twill \
 && chmod 755 /usr/local/bin/twill-agent /usr/local/bin/twill \
 && twill --help >/dev/null
ENV NODE_ENV=production
ENTRYPOINT ["twill-agent"]
