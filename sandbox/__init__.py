"""Fake Salesforce, HubSpot and Slack servers and the synthetic company they serve.

Not part of the production import path: only ``service.py sandbox`` / ``demo``, the
tests and the benchmarks import it.
"""
