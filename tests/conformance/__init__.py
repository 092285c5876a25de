"""Conformance suite of the Kubernetes API emulator (also runs against a real cluster)."""
