"""espssl host tools: certificates, CA bins, flashing, deploy, virtual board, HIL."""

__version__ = "0.1.0"
