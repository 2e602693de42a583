"""Helpers shared by every test folder; each folder keeps only what is its own.

* :mod:`tests._support.ci`: the rule for tests that need a tool (Redis,
  Node.js, Chromium, curl, ...): skip with the reason, or fail under ``CI=true``;
* :mod:`tests._support.ports`: loopback and free ports for subprocesses;
* :mod:`tests._support.waiting`: bounded waits for a condition (async and sync);
* :mod:`tests._support.processes`: server subprocesses: wait until they answer
  a handshake (or accept connections, or stop accepting them), stop them;
* :mod:`tests._support.tokens`: JWT material for the access-control tests
  (keys, claims, hand-forged tokens, config files);
* :mod:`tests._support.presence`: the presence test extension.

Nothing here sleeps for a fixed time to decide what a test exercises: every
wait polls a condition and gives up after a bound.
"""
