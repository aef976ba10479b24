"""The settings of the task sandbox, and what one attempt is and gives back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxConfig:
    """How tasks are confined on this volunteer. Defaults in the spirit of BOINC's
    preferences (a fair share of memory, bounded disk); every value is configurable."""

    uid_base: int = 64000
    """Tasks run as uid = gid = ``uid_base + n`` (0 <= n < ``uid_count``) when the daemon
    is root. The range must be used by bjgrid alone: a leased account's processes are killed."""
    uid_count: int = 1000
    """Size of the slot-account range."""
    lock_dir: str = "/run/bonjourgrid/slot-accounts"
    """Host-wide folder of the accounts' lease locks (shared by every daemon of the host)."""
    slot_users: bool | None = None
    """Run tasks as slot accounts: None means "when the daemon runs as root"."""
    memory_mb: int = 2048
    """Memory cap of a task that declares no ``memory_mb``."""
    cpu_seconds: int = 7 * 24 * 3600
    """CPU time of one attempt (SIGXCPU, then SIGKILL 5 s later)."""
    file_size_mb: int = 4096
    """Largest file a task may write (SIGXFSZ beyond)."""
    max_processes: int = 512
    """Processes and threads of one slot account (only with slot accounts: RLIMIT_NPROC
    counts every process of a uid, the daemon's user's included)."""
    disk_mb: int = 0
    """Size of a task's directory; 0: no limit beyond file size."""
    isolate_network: bool = True
    """No network for tasks that do not ask for it, where the kernel allows."""
    isolate_mounts: bool = True
    """Private /tmp and /dev/shm, where the kernel allows."""
    tmp_size_mb: int = 256
    """Size of the private /tmp (and /dev/shm)."""
    watch_interval: float = 0.2
    """How often the memory of a running task is measured."""
    max_output_mb: int = 64
    """A task's whole result (logs and outputs, uncompressed); beyond, the attempt fails with
    ``outputs exceed N MB`` and only its logs' tails come back. Well under one frame."""
    max_output_files: int = 10_000
    """Files and folders of a task's result."""
    max_unpack_mb: int = 1024
    """Expanded size of an app bundle or of a task's inputs."""
    max_unpack_files: int = 100_000
    """Entries of an app bundle or of a task's inputs."""
    cgroups: bool = True
    """A cgroup per attempt (freeze, kill, memory, pids) where the daemon can make one."""
    bwrap: str = ""
    """The bubblewrap that confines tasks when the daemon is not root (``bwrap.py``): a path,
    or "" for ``bwrap`` on PATH. A path that does not exist means no bubblewrap here."""
    allow_unisolated: bool = False
    """Run tasks with no isolation where neither root nor bubblewrap can give any (the owner's
    explicit choice: ``join --allow-unisolated``); otherwise such a volunteer refuses tasks."""

    def __post_init__(self) -> None:
        if self.uid_base < 1000 or self.uid_count < 1:
            raise ValueError(f"uid_base {self.uid_base}: slot accounts must not be system uids")


DEFAULT_SANDBOX = SandboxConfig()


@dataclass(frozen=True)
class TaskRun:
    app: str
    task: str
    attempt: int
    argv: tuple[str, ...]
    env: dict[str, str]
    timeout: float | None
    outputs: tuple[str, ...]
    inputs: bytes
    inputs_sha256: str
    memory_mb: int = 0
    """The task's declared memory; 0: the sandbox's default cap."""
    network: bool = False
    """The task asked for the network."""


@dataclass(frozen=True)
class TaskOutcome:
    exit_code: int | None
    seconds: float
    error: str
    outputs: bytes
    outputs_sha256: str
