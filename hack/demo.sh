#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The Quick start demo: twill-agent in standalone mode enforcing
# examples/demo (three pods, two NetworkPolicies), pods wired by the real
# twill-cni plugin into network namespaces, and a table of which connections
# pass and which are dropped, with the drop reasons the datapath reported.
# Everything it makes is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (it creates network namespaces and loads BPF)" >&2; exit 1; }
bash hack/install-deps.sh >/dev/null
[ -x build/twill-cni ] && [ build/twill-cni -nt cni/main.ts ] || bash hack/build-cni.sh >/dev/null

RUN=$(mktemp -d /tmp/twill-demo.XXXXXX)
BPF_ROOT=/sys/fs/bpf/twill-demo-$$
SOCK=$RUN/agent.sock
PODS=(frontend backend db)
declare -A PORT=([frontend]=80 [backend]=8080 [db]=5432)
AGENT_PID=""
cleanup() {
  set +e
  for p in "${PODS[@]}"; do
    ip netns pids "twd-$p" 2>/dev/null | xargs -r kill 2>/dev/null
    CNI_COMMAND=DEL CNI_CONTAINERID="demo-$p" CNI_NETNS="/var/run/netns/twd-$p" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
      build/twill-cni <"$RUN/net.json" >/dev/null 2>&1
    ip netns del "twd-$p" 2>/dev/null
  done
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null && wait "$AGENT_PID" 2>/dev/null
  node --import tsx agent/main.ts --cleanup --bpf-root "$BPF_ROOT" >/dev/null 2>&1
  rm -rf "$RUN"
}
trap cleanup EXIT

echo "== starting twill-agent (standalone, manifests from examples/demo)"
node --import tsx agent/main.ts --manifests examples/demo --bpf-root "$BPF_ROOT" --state-dir "$RUN/state" \
  --socket "$SOCK" --pod-cidr 10.244.7.0/24 --pod-cidr fd00:10:244:7::/64 --log-level warn 2>"$RUN/agent.log" &
AGENT_PID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || { cat "$RUN/agent.log"; exit 1; }
twill() { node --import tsx cli/main.ts --socket "$SOCK" "$@"; }

echo "{\"cniVersion\":\"1.1.0\",\"name\":\"twill\",\"type\":\"twill-cni\",\"socket\":\"$SOCK\",\"deletionQueueDir\":\"$RUN/dq\"}" >"$RUN/net.json"
declare -A IP4
for p in "${PODS[@]}"; do
  ip netns add "twd-$p"
  ip -n "twd-$p" link set lo up
  res=$(CNI_COMMAND=ADD CNI_CONTAINERID="demo-$p" CNI_NETNS="/var/run/netns/twd-$p" CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
        CNI_ARGS="K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$p" build/twill-cni <"$RUN/net.json")
  IP4[$p]=$(node -e 'const r=JSON.parse(process.argv[1]); console.log(r.ips.find(i=>!i.address.includes(":")).address.split("/")[0])' "$res")
  ip netns exec "twd-$p" node hack/netprobe.mjs serve "${PORT[$p]}" >/dev/null &
done
sleep 0.5
echo "== pods (twill endpoint list)"
twill endpoint list

echo
echo "== policies (examples/demo/policy.yaml): backend <- frontend on TCP api(8080); db <- backend on TCP 5432"
printf "%-10s -> %-10s %-6s %-8s %s\n" FROM TO PORT RESULT "POLICY TRACE"
for src in "${PODS[@]}"; do
  for dst in "${PODS[@]}"; do
    [ "$src" = "$dst" ] && continue
    if ip netns exec "twd-$src" node hack/netprobe.mjs connect tcp "${IP4[$dst]}" "${PORT[$dst]}" 700 >/dev/null; then r=allowed; else r=DROPPED; fi
    t=$(twill policy trace --from "demo/$src" --to "demo/$dst" --port "${PORT[$dst]}" --protocol TCP -o json 2>/dev/null | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const t=JSON.parse(s);console.log(String(t.verdict).toLowerCase().replace("trace_verdict_",""))})' || true)
    printf "%-10s -> %-10s %-6s %-8s trace says %s\n" "$src" "$dst" "${PORT[$dst]}" "$r" "$t"
  done
done
echo
echo "== drops the datapath reported (twill observe --last 10 --verdict dropped)"
twill observe --last 10 --verdict dropped
echo
echo "== counters (twill map dump metrics)"
twill map dump metrics
