"""Tests against a real kube-apiserver and kube-controller-manager (tests/control_plane)."""
