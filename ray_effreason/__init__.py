"""ray_effreason: length-penalized RL (Arora & Zanette 2025) on a Ray actor system."""

__version__ = "0.1.0"
