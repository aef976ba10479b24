"""condor_config text for one computing element: the head, its execute nodes, the client.

Pure: strings in, text out. Every file is complete on its own (the installation's
``/etc/condor`` is never read): ``CONDOR_CONFIG`` points the daemons at it.

Identities (IDTOKENS, signed by the CE's own key, issuer = the CE's trust domain ``D``)::

    condor@D             the head's own daemons (collector, negotiator, schedd, master)
    bjgrid@D             the submitter (our coordinator, through the htcondor2 bindings)
    <node>@workers.D     one recruited worker's startd and master

Only the head holds the signing key, so only the head can validate tokens; workers accept the
head's claims through HTCondor's claim-id sessions (match password), which need no key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The account jobs run as; it exists in the rootfs (scripts/setup-condor) and is the user part
# of the submitter's identity, so the schedd accepts the job owner.
JOB_USER = "bjgrid"
HEAD_USER = "condor"
KEY_NAME = "POOL"
# Domain appended to names made from IP addresses (NO_DNS): nothing here uses DNS.
DOMAIN = "bjgrid"

_RELEASE = """\
RELEASE_DIR = /usr
BIN = $(RELEASE_DIR)/bin
SBIN = $(RELEASE_DIR)/sbin
LIB = $(RELEASE_DIR)/lib/condor
LIBEXEC = $(RELEASE_DIR)/libexec/condor
SHARE = $(RELEASE_DIR)/share/condor
ETC = /etc/condor
"""

# Timing for interactive use: the first task should start within seconds, not 20-60 s.
_TIMING = """\
# Negotiate every 2 s instead of 60 s: new jobs are matched quickly.
NEGOTIATOR_INTERVAL = 2
# Allow back-to-back negotiation cycles when the schedd asks for one.
NEGOTIATOR_MIN_INTERVAL = 1
# Hidden knob (20 s by default) that postpones a cycle too close to the last: the big one.
NEGOTIATOR_CYCLE_DELAY = 1
# The schedd re-examines its queue and asks for matches every 2 s (default 300 s).
SCHEDD_INTERVAL = 2
# ...and may do so immediately after a change (default 5 s).
SCHEDD_MIN_INTERVAL = 0
# Daemons re-advertise every 5 s (default 300 s): status and the pool view stay fresh.
UPDATE_INTERVAL = 5
MASTER_UPDATE_INTERVAL = 5
# The startd re-evaluates its policy every second (default 5 s): the owner's return
# suspends a job within ~1 s (docs/owner-policy.md).
POLLING_INTERVAL = 1
# The starter reports job progress every 2 s, the first time after 2 s.
STARTER_UPDATE_INTERVAL = 2
STARTER_INITIAL_UPDATE_INTERVAL = 2
SHADOW_QUEUE_UPDATE_INTERVAL = 2
# Jobs get 2 s to leave on vacate instead of 10 min: a cancelled CE ends quickly.
MachineMaxVacateTime = 2
# No benchmark run at startd start: slots appear at once.
RUNBENCHMARKS = False
# A claim is reused for the owner's next job as long as jobs remain (default: 20 min):
# no renegotiation between the tasks of a bag.
CLAIM_WORKLIFE = -1
"""

_COMMON = """\
# No DNS on a zeroconf LAN: names are made from addresses; IPv4 only.
NO_DNS = True
DEFAULT_DOMAIN_NAME = {domain}
ENABLE_IPV6 = False
# Several hosts may share one kernel (namespaces): never rewrite /proc/sys.
ENABLE_KERNEL_TUNING = False
# No mailer: a CE has no administrator to mail.
MAIL = /bin/true
SENDMAIL = /bin/true
CONDOR_ADMIN =
# One CE, one UID domain: jobs run as {job_user} on every execute node; I/O goes by transfer.
UID_DOMAIN = {trust}
TRUST_UID_DOMAIN = True
SOFT_UID_DOMAIN = True
FILESYSTEM_DOMAIN = $(FULL_HOSTNAME)
# Listen only on the LAN address given (the link-local one).
NETWORK_INTERFACE = {address}
BIND_ALL_INTERFACES = False
# Every daemon on its own port: no shared_port daemon, one process less per host.
USE_SHARED_PORT = False
LOCAL_DIR = {local_dir}
LOG = $(LOCAL_DIR)/log
SPOOL = $(LOCAL_DIR)/spool
EXECUTE = $(LOCAL_DIR)/execute
RUN = $(LOCAL_DIR)/run
LOCK = $(LOCAL_DIR)/lock
CRED_STORE_DIR = $(LOCAL_DIR)/cred
# Each daemon writes its address here once it listens (daemons.py waits for these files).
MASTER_ADDRESS_FILE = $(LOG)/.master_address
COLLECTOR_ADDRESS_FILE = $(LOG)/.collector_address
NEGOTIATOR_ADDRESS_FILE = $(LOG)/.negotiator_address
SCHEDD_ADDRESS_FILE = $(SPOOL)/.schedd_address
STARTD_ADDRESS_FILE = $(LOG)/.startd_address
# Stop as soon as the master is told to (the coordinator owns the CE's life).
SHUTDOWN_GRACEFUL_TIMEOUT = 5
"""

_SECURITY_COMMON = """\
# Security: IDTOKENS signed by this CE's key only; every command authenticated, signed and
# encrypted. No CLAIMTOBE, no host-based trust, no anonymous reads.
TRUST_DOMAIN = {trust}
SEC_DEFAULT_AUTHENTICATION = REQUIRED
SEC_DEFAULT_ENCRYPTION = REQUIRED
SEC_DEFAULT_INTEGRITY = REQUIRED
SEC_CLIENT_AUTHENTICATION = REQUIRED
SEC_CLIENT_ENCRYPTION = REQUIRED
SEC_CLIENT_INTEGRITY = REQUIRED
SEC_READ_AUTHENTICATION = REQUIRED
SEC_CLIENT_AUTHENTICATION_METHODS = IDTOKENS
SEC_TOKEN_DIRECTORY = {token_dir}
# Tokens are only ever handed out by our coordinator, never requested over the network.
SEC_ENABLE_TOKEN_REQUEST = False
# No "family" session: HTCondor lets daemons started by one master skip authentication with
# a session every process of the family inherits, and offers it to any daemon at its own
# address. A head and a startd on one machine (a coordinator that also volunteers, a replica
# that took over) are two families: the startd's family session is refused by the collector
# ("Server rejected our session id") and the machine never joins. Costs a handshake or two.
SEC_USE_FAMILY_SESSION = False
"""


@dataclass(frozen=True)
class CeNames:
    """The names one CE uses: its trust domain and the identities inside it."""

    ce_id: str

    @property
    def trust_domain(self) -> str:
        return f"{self.ce_id}.{DOMAIN}"

    @property
    def head(self) -> str:
        return f"{HEAD_USER}@{self.trust_domain}"

    @property
    def submitter(self) -> str:
        return f"{JOB_USER}@{self.trust_domain}"

    @property
    def workers_domain(self) -> str:
        return f"workers.{self.trust_domain}"

    def worker(self, node: str) -> str:
        label = "".join(c if c.isalnum() or c in "-_" else "-" for c in node)
        if not label:
            raise ValueError(f"bad worker node id {node!r}")
        return f"{label}@{self.workers_domain}"


def collector_address(address: str, port: int) -> str:
    """``ip:port``: CONDOR_HOST as an address, never a name (nothing resolves names)."""
    return f"{address}:{port}"


def head_config(
    names: CeNames,
    *,
    address: str,
    port: int,
    local_dir: Path,
    key_file: Path,
    token_dir: Path,
) -> str:
    """The CE head on the coordinator: collector (on ``port``), negotiator, schedd."""
    me = f"{names.head}/{address}"
    return "\n".join(
        [
            "# bonjourgrid: HTCondor CE head (collector, negotiator, schedd)",
            _RELEASE,
            f"CONDOR_HOST = {collector_address(address, port)}",
            "COLLECTOR_HOST = $(CONDOR_HOST)",
            f"COLLECTOR_NAME = bjgrid CE {names.ce_id}",
            "DAEMON_LIST = MASTER, COLLECTOR, NEGOTIATOR, SCHEDD",
            _COMMON.format(
                domain=DOMAIN,
                job_user=JOB_USER,
                trust=names.trust_domain,
                address=address,
                local_dir=local_dir,
            ),
            _TIMING,
            _SECURITY_COMMON.format(trust=names.trust_domain, token_dir=token_dir),
            "# Only the head holds the CE's signing key, so only it can validate tokens.",
            "SEC_DEFAULT_AUTHENTICATION_METHODS = IDTOKENS",
            f"SEC_TOKEN_POOL_SIGNING_KEY_FILE = {key_file}",
            f"SEC_PASSWORD_DIRECTORY = {key_file.parent}",
            f"SEC_TOKEN_ISSUER_KEYS = {KEY_NAME}",
            "# Who may do what: the head itself, the submitter, and the CE's workers only.",
            f"ALLOW_READ = {me} {names.submitter} *@{names.workers_domain}",
            f"ALLOW_WRITE = {me} {names.submitter}",
            f"ALLOW_DAEMON = {me}",
            f"ALLOW_NEGOTIATOR = {me}",
            f"ALLOW_ADMINISTRATOR = {me}",
            f"ALLOW_CONFIG = {me}",
            f"ALLOW_OWNER = {me}",
            f"ALLOW_ADVERTISE_SCHEDD = {me}",
            f"ALLOW_ADVERTISE_MASTER = {me} *@{names.workers_domain}",
            f"ALLOW_ADVERTISE_STARTD = *@{names.workers_domain}",
            "# The head runs no jobs.",
            "START = False",
            "",
        ]
    )


def execute_config(
    names: CeNames,
    *,
    address: str,
    head_address: str,
    head_port: int,
    local_dir: Path,
    token_dir: Path,
    cpus: int,
    memory_mb: int,
    owner_file: Path | None = None,
    owner_script: Path | None = None,
) -> str:
    """An execute node (master + startd) of the CE whose head is at ``head_address:port``;
    ``owner_file`` and ``owner_script`` are those of :func:`owner_policy` (None: jobs always
    run, as on a dedicated node)."""
    head = f"{names.head}/{head_address}"
    return "\n".join(
        [
            "# bonjourgrid: HTCondor CE execute node (startd)",
            _RELEASE,
            f"CONDOR_HOST = {collector_address(head_address, head_port)}",
            "COLLECTOR_HOST = $(CONDOR_HOST)",
            "DAEMON_LIST = MASTER, STARTD",
            _COMMON.format(
                domain=DOMAIN,
                job_user=JOB_USER,
                trust=names.trust_domain,
                address=address,
                local_dir=local_dir,
            ),
            _TIMING,
            _SECURITY_COMMON.format(trust=names.trust_domain, token_dir=token_dir),
            "# A worker holds no key: it proves itself with its token and accepts only the",
            "# head's claims (claim-id sessions) and administration.",
            "SEC_DEFAULT_AUTHENTICATION_METHODS = IDTOKENS",
            f"ALLOW_READ = {head}",
            f"ALLOW_WRITE = {head}",
            f"ALLOW_DAEMON = {head}",
            f"ALLOW_NEGOTIATOR = {head}",
            f"ALLOW_ADMINISTRATOR = {head}",
            f"ALLOW_CONFIG = {head}",
            f"ALLOW_OWNER = {head}",
            "# The volunteer's share: what bjgrid --slots gives, as one partitionable slot.",
            f"NUM_CPUS = {cpus}",
            f"MEMORY = {memory_mb}",
            "# Owner first: jobs run at the lowest CPU priority (DESIGN: nice 19).",
            "JOB_RENICE_INCREMENT = 19",
            *(
                owner_policy(owner_file, owner_script)
                if owner_file is not None and owner_script is not None
                else [
                    "START = True",
                    "SUSPEND = False",
                    "PREEMPT = False",
                    "KILL = False",
                    "WANT_SUSPEND = False",
                    "WANT_VACATE = False",
                ]
            ),
            "",
        ]
    )


OWNER_ATTR = "BjgOwner"
"""The machine ClassAd attribute that carries bjgrid's owner policy to the startd."""
OWNER_OK, OWNER_BUSY, OWNER_GONE = "ok", "busy", "gone"
"""Its values: run; suspend (the owner is back); give the job back (suspended too long)."""
OWNER_POLL_S = 0.2
"""How often the startd cron job looks at the owner file (a shell builtin read: cheap)."""

# A startd cron job in WaitForExit mode that never exits: it prints the owner file's word as
# BjgOwner each time it changes, ending each ad with "-" so that the startd publishes it at
# once. POSIX sh only (it runs in the rootfs, as the startd's user).
OWNER_SCRIPT = f"""\
#!/bin/sh
last=
while :; do
  v=ok
  read -r v < "$1" 2>/dev/null || v=ok
  case "$v" in {OWNER_BUSY}|{OWNER_GONE}) ;; *) v={OWNER_OK} ;; esac
  if [ "$v" != "$last" ]; then printf '{OWNER_ATTR} = "%s"\\n-\\n' "$v"; last=$v; fi
  sleep {OWNER_POLL_S}
done
"""


def owner_policy(owner_file: Path, owner_script: Path) -> list[str]:
    """The startd's policy lines: HTCondor itself suspends, continues and evicts the CE's job
    as bjgrid's owner policy says (the volunteer writes ``owner_file``; ``owner_script`` is
    :data:`OWNER_SCRIPT`). Evaluated every POLLING_INTERVAL.

    ``busy``: START false (no new job here), SUSPEND true (the starter SIGSTOPs the job);
    ``ok``: CONTINUE (SIGCONT); ``gone`` (bjgrid's maximum suspension passed): PREEMPT with
    no vacate time, so the job goes back to the schedd's queue and runs on another machine.
    """
    busy = f'({OWNER_ATTR} =?= "{OWNER_BUSY}" || {OWNER_ATTR} =?= "{OWNER_GONE}")'
    return [
        "# Owner first (docs/owner-policy.md): bjgrid's owner policy, published by a cron job.",
        "STARTD_CRON_JOBLIST = BJGOWNER",
        f"STARTD_CRON_BJGOWNER_EXECUTABLE = {owner_script}",
        f"STARTD_CRON_BJGOWNER_ARGS = {owner_file}",
        "STARTD_CRON_BJGOWNER_MODE = WaitForExit",
        "STARTD_CRON_BJGOWNER_PERIOD = 1",
        "STARTD_CRON_BJGOWNER_RECONFIG = False",
        f"START = !{busy}",
        "WANT_SUSPEND = True",
        f"SUSPEND = {busy}",
        f"CONTINUE = !{busy}",
        f'PREEMPT = {OWNER_ATTR} =?= "{OWNER_GONE}"',
        "WANT_VACATE = False",
        "KILL = False",
        "# The owner's machine: never hold a suspended job past the give-back.",
        "MAXJOBRETIREMENTTIME = 0",
    ]


def client_params(
    names: CeNames, *, head_address: str, head_port: int, token_dir: Path
) -> dict[str, str]:
    """Parameters for the htcondor2 bindings talking to this CE as its submitter.

    The bindings' configuration is per process; the token is chosen by issuer, so one token
    directory may hold the submitter tokens of several CEs.
    """
    return {
        "CONDOR_HOST": collector_address(head_address, head_port),
        "COLLECTOR_HOST": collector_address(head_address, head_port),
        "NO_DNS": "True",
        "DEFAULT_DOMAIN_NAME": DOMAIN,
        "ENABLE_IPV6": "False",
        "UID_DOMAIN": names.trust_domain,
        "SEC_CLIENT_AUTHENTICATION": "REQUIRED",
        "SEC_CLIENT_ENCRYPTION": "REQUIRED",
        "SEC_CLIENT_INTEGRITY": "REQUIRED",
        "SEC_CLIENT_AUTHENTICATION_METHODS": "IDTOKENS",
        "SEC_TOKEN_DIRECTORY": str(token_dir),
    }


def client_config(names: CeNames, *, head_address: str, head_port: int, token_dir: Path) -> str:
    """:func:`client_params` as a config file (for CONDOR_CONFIG or tools in the chroot)."""
    params = client_params(
        names, head_address=head_address, head_port=head_port, token_dir=token_dir
    )
    return "".join(f"{k} = {v}\n" for k, v in params.items())
