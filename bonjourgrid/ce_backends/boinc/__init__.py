"""BOINC computing elements: the coordinator serves a per-app BOINC project, volunteers' real
``boinc-client`` processes compute for it.

Modules: ``signing`` (BOINC code-signing keys and signatures), ``scheduler`` (scheduler RPC
codec, pure), ``issuer`` (which result goes where, deadlines, reissue; pure), ``wrapper`` (how
a plain command runs as a BOINC job), ``project`` (the HTTP project server), ``guirpc`` and
``client`` (drive a local boinc client). See docs/backend-boinc.md.
"""
