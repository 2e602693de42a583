"""bayeux_trio: the trio network layer for bayeux_core."""

__all__: list[str] = []
