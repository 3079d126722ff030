"""Tests against a real Kubernetes API server: etcd, kube-apiserver and kube-controller-manager on loopback.

cluster.py starts them; conftest.py offers the session's control plane (`kube`) and a fresh namespace per
test (`namespace`). The binaries come from scripts/install-kube.sh.
"""
