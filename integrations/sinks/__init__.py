"""e5_integrations.sinks (see the package docs)."""
