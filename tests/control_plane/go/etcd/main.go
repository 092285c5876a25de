// Command etcd runs the etcd server the API server stores into, built from the etcd release
// k8s.io/apiserver requires so the control plane's module graph stays one consistent set.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
