// Command etcd is the upstream etcd server, built unchanged from
// go.etcd.io/etcd/server/v3 for the grader's end-to-end tests (see ../README.md).
// It is only the fallback of build.sh when Debian's etcd-server package is not
// available; it mirrors the main package of go.etcd.io/etcd/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
