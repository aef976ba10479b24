"""Pairing: hand the grid key to a new machine that proves it knows a short spoken code.

Pure parts: ``words`` (the code word list), ``code`` (format and parse), ``frames`` (the wire
format), ``session`` (the SPAKE2 exchange as sans-IO state machines, and an invitation's
rules). I/O shell: ``net`` (asyncio TCP) and bonjourgrid.discovery.invitation (mDNS). See
docs/security.md, "Pairing".
"""
