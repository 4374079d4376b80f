"""The bus port and its two adapters; `connect(url)` picks one by the URL's scheme."""
from shared.bus.base import Bus, Outcome, PublishError, Subscription, Topology


def connect(url: str, *, prefix: str = "", prefetch: int = 20, batch: int = 20, queue_type: str = "quorum") -> Bus:
    """queue_type: RabbitMQ's quorum queues in production; "classic" only where queues are
    created and deleted by the hundred (the per-test queues of the integration suite).
    batch: at most this many prefetched deliveries handled in one transaction (1 = one by one)."""
    if url.startswith("memory://"):
        from shared.bus.memory import MemoryBus
        return MemoryBus(url, prefix=prefix, prefetch=prefetch, batch=batch)
    if url.startswith(("amqp://", "amqps://")):
        from shared.bus.amqp import AmqpBus
        return AmqpBus(url, prefix=prefix, prefetch=prefetch, batch=batch, queue_type=queue_type)
    raise ValueError(f"TIERLINE_BUS_URL: unsupported scheme in {url.split('://')[0]!r} (memory:// or amqp://)")


__all__ = ["Bus", "Outcome", "PublishError", "Subscription", "Topology", "connect"]
