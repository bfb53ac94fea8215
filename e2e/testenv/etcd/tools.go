//go:build tools

// Package tools pins the upstream etcd commands built by ../build.sh.
// Nothing here is compiled into the product; it only anchors go.mod/go.sum.
package tools

import (
	_ "go.etcd.io/etcd/etcdctl/v3"
	_ "go.etcd.io/etcd/server/v3"
)
