"""The gateway's domain core, free of I/O: dossier statuses and their transitions, the office calendar, deadlines
computed from a dossier's status history, and dossier codes. Plain dataclasses and functions; no database, network
or clock access (callers pass ``now``)."""
