"""Abuse resistance: per-network, per-user and spraying limits (issue 9).

Import-light on purpose: ``config.py`` imports :mod:`saslauth.limits.settings`, and the front
process imports the rest.  The parts:

* :mod:`~saslauth.limits.settings` -- the ``limits:`` configuration (pydantic only);
* :mod:`~saslauth.limits.policy` -- pure arithmetic (decay, delay schedule, decisions);
* :mod:`~saslauth.limits.keys` -- client networks, keys and HMAC fingerprints;
* :mod:`~saslauth.limits.store` -- the in-memory store (bounded);
* :mod:`~saslauth.limits.redis_store` -- the shared Redis store, falling back to memory;
* :mod:`~saslauth.limits.limiter` -- what the session calls around each verification.
"""
