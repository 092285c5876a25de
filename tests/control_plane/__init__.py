"""A real Kubernetes control plane for tests: etcd, kube-apiserver and kube-controller-manager
built from the Go module in `go/` (build.py) and run on loopback (launcher.py)."""
