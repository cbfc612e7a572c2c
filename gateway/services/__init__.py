"""The gateway's use cases: intake, agency events, supplements, withdrawal, payment settlement, tracking events.

Each runs in one unit of work (:mod:`gateway.unit_of_work`), changes the dossier through the domain's rules, and
raises domain events that the flows subscribe to. Errors are :mod:`gateway.errors`; no HTTP here.
"""
