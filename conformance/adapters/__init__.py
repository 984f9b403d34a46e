"""Adapters: thin wrappers that expose an implementation through the protocol in
conformance.protocol."""
