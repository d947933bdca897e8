"""Sync between replicas (decision 0030): the change log published to Redis Streams
(``streams``, ``wire``), applied elsewhere by a CRDT merge (``merge``), bootstrapping from a
snapshot (``snapshot``); ``replica.Sync`` is ``StellarMemory.sync``."""
