//go:build tools

// Package tools pins the upstream helm command built by ../build.sh.
// Nothing here is compiled into the product; it only anchors go.mod/go.sum.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
