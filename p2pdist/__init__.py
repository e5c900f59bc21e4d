"""p2pdist: peer-to-peer superdistribution of license-signed works over BitTorrent."""

__version__ = "0.1.0"

__all__ = ["__version__"]
