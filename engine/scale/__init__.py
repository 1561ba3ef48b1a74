"""Labeling past one box: the single-box pipeline run by a Ray Data actor pool.

Read in the order data flows: `cluster` (connect, size the actor pool), `split` (the
input listed and cut into shards up front), `actor` (one shard labeled by the engine's own
pipeline), `driver` (the job, and the shards committed into the run folder). Ray is an
optional extra (`pip install distill[scale]`), imported only when a run asks for it.
"""
