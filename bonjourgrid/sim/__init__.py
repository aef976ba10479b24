"""The simulation tier: many nodes in one process, a seeded router, a virtual clock."""
