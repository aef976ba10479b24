"""BOINC computing elements: a per-app project served by the coordinator, real boinc-client volunteers."""
