"""Simulated upstreams for tests, demos and agencies' own trials (``dvc-gateway simulate …``).

- :mod:`gateway.simulators.agency`: an agency one-stop system speaking the reference REST contract
  (``docs/agency-rest-contract.md``).
"""
