"""HTCondor computing elements: a real HTCondor pool assembled for one application.

Foundations (see docs/backend-condor.md): ``installation`` (find daemons: PATH or a chroot
rootfs from scripts/setup-condor), ``config`` (pure condor_config text for the head, execute
nodes and the bindings), ``security`` (per-CE IDTOKENS signing key and tokens), ``daemons``
(run and stop one condor_master), ``jobs`` (tasks as jobs through htcondor2; state table).
"""
