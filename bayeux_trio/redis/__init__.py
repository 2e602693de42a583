"""Run many Bayeux server processes as one, on Redis (docs/redis.md).

Needs the ``coredis`` package: the ``redis`` extra (``pip install '.[redis]'`` in a clone)::

    from bayeux_trio import BayeuxServer, ServerConfig
    from bayeux_trio.redis import RedisBus

    server = BayeuxServer(ServerConfig(), bus=RedisBus("redis://127.0.0.1:6379/0"))

The URL may also name a Redis Cluster (``redis+cluster://host:port,...``) or
the sentinels that know where the master is
(``redis+sentinel://host:port,.../mastername``), followed across failovers.
"""

from ._bus import RedisBus as RedisBus

__all__ = ("RedisBus",)
