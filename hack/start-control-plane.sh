#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Start a throwaway Kubernetes control plane (etcd + kube-apiserver, nothing
# else) on 127.0.0.1 with all state under DIR:
#   hack/start-control-plane.sh DIR        # DIR must be absent or empty
# Writes DIR/kubeconfig (admin, token auth), DIR/env (shell-sourceable:
# SERVER, TOKEN, KUBECONFIG, CA_FILE, BIN_DIR, ports and pids) and the logs
# DIR/etcd.log, DIR/kube-apiserver.log, and returns once /readyz is ok.
# Stop it with hack/stop-control-plane.sh DIR.
#
# Binaries come from hack/build-control-plane.sh (run it first; it is fast
# once built). There is no controller-manager or scheduler, so:
#  - the ServiceAccount admission plugin is off (it would reject every pod
#    until a controller creates the namespace's "default" service account);
#  - the apiserver's own endpoint reconciler is off (it would publish
#    127.0.0.1 as the "kubernetes" Service's endpoint, which validation
#    rejects for loopback addresses);
#  - pods must be created with spec.nodeName set, and their status is what
#    the test patches in (kubectl patch --subresource=status).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:?usage: start-control-plane.sh DIR}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
if [ -n "$(ls -A "$dir")" ]; then
  echo "start-control-plane: $dir is not empty" >&2
  exit 2
fi
# stop-control-plane.sh only deletes directories that carry this marker.
touch "$dir/.twill-control-plane"

bin="${TWILL_CONTROL_PLANE_BIN:-/var/cache/twill/bin}"
for b in etcd kube-apiserver kubectl; do
  [ -x "$bin/$b" ] || { echo "start-control-plane: $bin/$b missing: run hack/build-control-plane.sh" >&2; exit 1; }
done

etcd_pid="" apiserver_pid=""
fail() {
  echo "start-control-plane: $*" >&2
  for log in etcd.log kube-apiserver.log; do
    [ -f "$dir/$log" ] && { echo "--- tail $dir/$log" >&2; tail -n 20 "$dir/$log" >&2; }
  done
  [ -n "$apiserver_pid" ] && kill -KILL "$apiserver_pid" 2>/dev/null || true
  [ -n "$etcd_pid" ] && kill -KILL "$etcd_pid" 2>/dev/null || true
  exit 1
}

# A free TCP port on 127.0.0.1 not already handed out by this script. Another
# process can still take it before we bind; the readiness checks below catch
# that and the caller can retry.
taken=" "
free_port() {
  local p
  for _ in $(seq 1 200); do
    # Below the kernel's ephemeral range (32768+), so an outgoing
    # connection cannot take the port between this check and the bind.
    p=$((20000 + RANDOM % 12000))
    case "$taken" in *" $p "*) continue ;; esac
    if ! ss -Htln "sport = :$p" | grep -q .; then
      taken+="$p "
      echo "$p"
      return 0
    fi
  done
  return 1
}

# --- certificates and credentials --------------------------------------------
pki="$dir/pki"
mkdir -p "$pki"
(
  cd "$pki"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
    -subj "/CN=twill-test-ca" -keyout ca.key -out ca.crt \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj "/CN=kube-apiserver" -keyout apiserver.key -out apiserver.csr 2>/dev/null
  cat >apiserver.ext <<'EXT'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
EXT
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
    -extfile apiserver.ext -out apiserver.crt 2>/dev/null
  # Service-account token signing pair (RS256, what every client expects).
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
  openssl pkey -in sa.key -pubout -out sa.pub
) || fail "generate certificates failed"

token="$(openssl rand -hex 24)"
# token,user,uid,"groups": system:masters bypasses RBAC.
printf '%s,twill-admin,twill-admin,"system:masters"\n' "$token" >"$pki/tokens.csv"
chmod 600 "$pki"/*.key "$pki/tokens.csv"

# --- etcd ----------------------------------------------------------------------
etcd_port="$(free_port)" || fail "find a free port failed"
etcd_peer_port="$(free_port)" || fail "find a free port failed"
setsid "$bin/etcd" \
  --name=twill-test \
  --data-dir="$dir/etcd" \
  --listen-client-urls="http://127.0.0.1:$etcd_port" \
  --advertise-client-urls="http://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="twill-test=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync=true \
  --log-level=warn \
  </dev/null >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
# Recorded at once so that stop-control-plane.sh can clean up even when this
# script is killed half way.
echo "ETCD_PID=$etcd_pid" >>"$dir/pids"

for i in $(seq 1 100); do
  kill -0 "$etcd_pid" 2>/dev/null || fail "etcd exited during startup"
  if curl -fsS "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; then
    break
  fi
  [ "$i" = 100 ] && fail "etcd not healthy after 20s"
  sleep 0.2
done

# --- kube-apiserver ------------------------------------------------------------
apiserver_port="$(free_port)" || fail "find a free port failed"
setsid "$bin/kube-apiserver" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --secure-port="$apiserver_port" \
  --etcd-servers="http://127.0.0.1:$etcd_port" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --token-auth-file="$pki/tokens.csv" \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --authorization-mode=Node,RBAC \
  --service-cluster-ip-range=10.96.0.0/16 \
  --disable-admission-plugins=ServiceAccount \
  --endpoint-reconciler-type=none \
  --allow-privileged=true \
  --profiling=false \
  --cert-dir="$pki" \
  </dev/null >"$dir/kube-apiserver.log" 2>&1 &
apiserver_pid=$!
echo "APISERVER_PID=$apiserver_pid" >>"$dir/pids"

server="https://127.0.0.1:$apiserver_port"
cat >"$dir/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: twill-test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: twill-admin
  user:
    token: $token
contexts:
- name: twill-test
  context:
    cluster: twill-test
    user: twill-admin
current-context: twill-test
KUBECONFIG
chmod 600 "$dir/kubeconfig"

cat >"$dir/env" <<ENV
SERVER=$server
TOKEN=$token
KUBECONFIG=$dir/kubeconfig
CA_FILE=$pki/ca.crt
BIN_DIR=$bin
ETCD_PORT=$etcd_port
ETCD_PEER_PORT=$etcd_peer_port
APISERVER_PORT=$apiserver_port
ETCD_PID=$etcd_pid
APISERVER_PID=$apiserver_pid
ENV

# readyz covers etcd, the post-start hooks (bootstrap RBAC roles, priority
# classes, the default namespaces) and informer sync.
for i in $(seq 1 300); do
  kill -0 "$apiserver_pid" 2>/dev/null || fail "kube-apiserver exited during startup"
  if [ "$(curl -sS --cacert "$pki/ca.crt" -H "Authorization: Bearer $token" "$server/readyz" 2>/dev/null)" = ok ]; then
    break
  fi
  [ "$i" = 300 ] && fail "kube-apiserver not ready after 60s"
  sleep 0.2
done
# The "default" namespace is created by a post-start controller shortly after
# readyz on some versions; tests expect it.
for i in $(seq 1 100); do
  "$bin/kubectl" --kubeconfig="$dir/kubeconfig" get namespace default >/dev/null 2>&1 && break
  [ "$i" = 100 ] && fail "namespace default not created after 20s"
  sleep 0.2
done
echo "start-control-plane: $server ready (dir $dir)" >&2
