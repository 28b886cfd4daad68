"""The dashboard (``make serve``): Dash over the results store; see ``pipeline.dashboard.app``."""
