"""Cluster mode (``pip install paintbridge[cluster]``): one websocket front end, engine replicas on Ray Serve.

- ``routing``: which replica runs which job (pure; no Ray)
- ``replica``: one engine replica (the single-machine router over the models folder its machine sees)
- ``pool``: deploying replicas as Serve applications, finding them, their routing states
- ``dispatch``: the front end's job queue: fair per-client queues (``server.jobs``) placed on replicas, streamed back
- ``frontend``: the websocket server over the pool; ``launch``: ``paintbridge serve --cluster`` and ``worker``

Importing this package imports no Ray; ``pool``, ``dispatch``, ``frontend`` and ``launch`` need it.
"""
