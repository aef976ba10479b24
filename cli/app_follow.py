"""Following one app to its end: progress on stderr, Ctrl-C cancels, outputs written at the
end, and the exit status from the shared table (cli/outcome.py). `submit` uses it after the
daemon accepted the app; `watch APP_ID` uses it to re-attach to a running app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import click
from rich.text import Text

from bonjourgrid.app.bundle import unpack_files
from bonjourgrid.daemon.local_messages import CancelApp, FetchResults, Progress, Results, Watch

from . import outcome
from .context import EXIT_INTERRUPTED, Abort, Ctx
from .daemon_client import DaemonSession
from .progress import ProgressView
from .proofs import request_proof


class Follower:
    """One app followed through ``session`` until it ends; ``out_dir`` None: the app's
    name decides (``./<name>-results/``)."""

    def __init__(
        self,
        ctx: Ctx,
        app_id: str,
        *,
        out_dir: Path | None,
        as_json: bool,
        sign_key: Path | None,
        cancel_on_interrupt: bool = True,
    ) -> None:
        self.ctx, self.app_id, self.out_dir = ctx, app_id, out_dir
        self.as_json, self.sign_key = as_json, sign_key
        self.cancel_on_interrupt = cancel_on_interrupt
        """submit: the first Ctrl-C cancels the app; watch: it only stops watching."""
        self.interrupts = 0

    async def run(self, session: DaemonSession) -> int:
        last = await self._watch(session)
        return await self._collect(session, last)

    async def _watch(self, session: DaemonSession) -> Progress | None:
        """Progress until the app ends here; None at once when this machine does not
        coordinate it (a takeover moved it): ``_collect`` then follows it by its results."""
        loop = asyncio.get_running_loop()
        cancel_sent = asyncio.Event()

        def on_sigint() -> None:
            self.interrupts += 1
            if not self.cancel_on_interrupt:
                raise KeyboardInterrupt
            if self.interrupts == 1:  # through the console the live progress draws on
                self.ctx.err.print(
                    Text("bjgrid: cancelling the app (Ctrl-C again to stop waiting)")
                )
                cancel_sent.set()
            else:
                raise KeyboardInterrupt

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        canceller = asyncio.create_task(self._cancel_when(session, cancel_sent))
        tty = sys.stderr.isatty()
        view = ProgressView(self.ctx.err, live=tty and not self.as_json)
        last: Progress | None = None
        ch = await session.open()

        async def ticking() -> None:
            while True:
                await asyncio.sleep(1.0)
                view.tick()

        ticker = asyncio.create_task(ticking())
        try:
            await ch.send(Watch(self.app_id))
            with view:
                while True:
                    msg = await ch.recv()
                    if not isinstance(msg, Progress):
                        break
                    last = msg
                    view.update(msg)
                    if msg.ended:
                        break
        finally:
            ticker.cancel()
            await ch.close()
            canceller.cancel()
            loop.remove_signal_handler(signal.SIGINT)
        return last

    def _proof(self, session: DaemonSession, action: str) -> str:
        """After a takeover the app's holder is another machine: prove it is the submitter."""
        return request_proof(self.ctx, session, action, self.app_id, self.sign_key)

    async def _cancel_when(self, session: DaemonSession, ev: asyncio.Event) -> None:
        await ev.wait()
        with contextlib.suppress(Exception):
            proof = self._proof(session, "cancel")
            await session.call(CancelApp(self.app_id, proof), timeout=10)

    async def _collect(self, session: DaemonSession, last: Progress | None) -> int:
        following = False
        while True:
            proof = self._proof(session, "results")  # one per request (nonce)
            try:
                reply = await session.call(FetchResults(self.app_id, proof), timeout=300)
            except Abort:
                if not following:  # the app was here a moment ago: its holder is settling
                    raise
                await asyncio.sleep(1.0)
                continue
            assert isinstance(reply, Results)
            if reply.complete or self.interrupts:
                break
            if not following:  # a takeover moved the app: follow it to its new coordinator
                click.echo(
                    f"bjgrid: app {self.app_id} is coordinated by another machine now; "
                    "following it",
                    err=True,
                )
                following = True
            await asyncio.sleep(1.0)
        out_dir = self.out_dir or Path(f"{reply.name}-results")
        write_results(reply, out_dir)
        code = outcome.exit_status(
            complete=reply.complete, outcome=reply.outcome, results=reply.results
        )
        if self.interrupts:
            code = EXIT_INTERRUPTED
        reason = last.reason if last else ""
        if self.as_json:
            doc = outcome.document(
                app=reply.app,
                name=reply.name,
                outcome=reply.outcome,
                reason=reason,
                output=out_dir,
                status=code,
                results=reply.results,
            )
            outcome.print_json(doc)
        else:
            click.echo(summary(reply, reason, out_dir), err=True)
        return code


def summary(reply: Results, reason: str, out_dir: Path) -> str:
    """The closing lines: counts, then each task not done with its state, exit code, reason
    and the last line it wrote on stderr (from the outputs just written)."""
    tasks = outcome.task_rows(reply.results)
    failed = [t for t in tasks if t.get("state") != "done"]
    n = len(tasks)
    head = f"{reply.outcome or 'running'}: {n - len(failed)}/{n} tasks done"
    if failed:
        head += f", {len(failed)} not done"
    if reason:
        head += f" — {reason}"
    lines = [head]
    # Tasks the cancel stopped have nothing of their own to say: one line for them all.
    said = [t for t in failed if t.get("state") == "cancelled" and t.get("exit_code") is None
            and t.get("reason") in (None, "", reason)]  # fmt: skip
    if said:
        lines.append(_ids_line(f"  {len(said)} cancelled:", [str(t.get("id")) for t in said]))
        failed = [t for t in failed if t not in said]
    for t in failed[:10]:
        bits = [str(t.get("state", "failed"))]
        if t.get("exit_code") is not None:
            bits.append(f"exit {t['exit_code']}")
        if t.get("reason") and t["reason"] != reason:  # the app's reason is said above
            bits.append(str(t["reason"]))
        last = last_line(out_dir, str(t.get("id", "")))
        lines.append(f"  {t.get('id')}: {', '.join(bits)}" + (f": {last}" if last else ""))
    if len(failed) > 10:
        lines.append(f"  ... and {len(failed) - 10} more (see results.json)")
    lines.append(f"outputs in {out_dir}/")
    return "\n".join(lines)


def _ids_line(head: str, ids: list[str], width: int = 79) -> str:
    """``head id id id …`` within ``width`` columns."""
    line = head
    for i, task in enumerate(ids):
        more = "" if i == len(ids) - 1 else " …"
        if len(line) + 1 + len(task) + len(more) > width:
            return line + " …"
        line += f" {task}"
    return line


def last_line(out_dir: Path, task_id: str, limit: int = 160) -> str:
    """The last non-empty line of a task's stderr as written here ("" when none). The file
    is the task's (hostile): read without following links, only its tail, printable only."""
    path = out_dir / task_id / "stderr"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - 4096), os.SEEK_SET)
        tail = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)
    lines = [ln for ln in tail.splitlines() if ln.strip()]
    text = lines[-1].strip() if lines else ""
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


def write_results(reply: Results, out_dir: Path) -> None:
    """DIR/<task-id>/ for each task and DIR/results.json, written as the submitting user."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if reply.outputs:
        unpack_files(reply.outputs, out_dir)
    tmp = out_dir / ".results.json.tmp"
    tmp.write_text(json.dumps(reply.results, indent=2) + "\n")
    os.replace(tmp, out_dir / "results.json")
