"""gpulab: provision GPU lab nodes to a verified deep-learning environment."""

__version__ = "0.1.0"
