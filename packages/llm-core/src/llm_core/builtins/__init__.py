"""Core's own components. They register through the same hooks as any third-party plugin."""
