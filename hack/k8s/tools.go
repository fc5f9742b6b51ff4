// SPDX-License-Identifier: Apache-2.0

//go:build tools

// Package tools pins the programs hack/build-control-plane.sh builds, so that
// `go mod tidy` keeps them (and only them) in go.mod and go.sum. The build
// tag keeps this file out of every real build: main packages cannot be
// imported.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
