"""Endpoint health: which upstream endpoints may get traffic.

- ``active``: HTTP health checks of every endpoint (``Service.health``), off the request path.
- ``outlier``: passive ejection of endpoints that keep failing real requests (``Service.outlier``).
- ``state``: the two verdicts combined into the endpoint lists of the route table's groups.
- ``monitor``: the three wired together on one event loop, for the server.
"""
