"""Progressive delivery: a route's canary moves through steps, judged on graylane's own counters.

- ``spec``: reading the rollout part of the config (step kinds, pause lengths, webhooks).
- ``analysis``: pure functions from counter windows to a verdict (pass, fail, inconclusive).
- ``state``: the state machine (one transition table) and its persistence (``rollouts.json``).
- ``webhooks``: a small asyncio HTTP client that posts rollout events, with back-off.
- ``controller``: the asyncio loop tying them together; commands for the admin API.
- ``overrides``: rollout weights -> a ``Config`` whose splits carry them, for the route table.
"""
