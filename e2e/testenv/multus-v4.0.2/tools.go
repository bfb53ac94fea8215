//go:build tools

// Package tools pins the upstream Multus v4.0.2 commands built by ../build.sh for the
// upstream-failure tests. Nothing here is compiled into the product.
package tools

import (
	_ "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/multus"
	_ "gopkg.in/k8snetworkplumbingwg/multus-cni.v4/cmd/thin_entrypoint"
)
