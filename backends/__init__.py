"""Executors of compiled plans (installed as `schedc.backends`)."""
