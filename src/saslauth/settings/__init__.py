"""Configuration pieces: the shared base and one module per passdb driver's settings."""
