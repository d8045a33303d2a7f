"""A real TensorBoard server and a headless Chromium for the tests, each always stopped.

:func:`tensorboard_server` runs ``python -m tensorboard.main`` on 127.0.0.1 with a port the system picks,
in a session of its own (its data server included), and kills that process group when the block ends.
:class:`Chromium` drives Debian's headless ``chromium`` through the DevTools protocol over
``--remote-debugging-pipe`` (JSON messages ending in a NUL byte on file descriptors 3 and 4), so no
WebSocket package is needed. Both run in a scratch folder with ``HOME`` and ``TMPDIR`` pointing there, so
nothing is written into the working directory or the user's home.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_URL = re.compile(rb"TensorBoard \S+ at (http://127\.0\.0\.1:\d+/)")


def _scratch_env(scratch: Path) -> dict[str, str]:
    home = str(scratch)
    return {**os.environ, "HOME": home, "TMPDIR": home, "XDG_CONFIG_HOME": home, "XDG_CACHE_HOME": home}


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and everything in its session (it was started with ``start_new_session``)."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever of the session is left (TensorBoard's data server)
    except ProcessLookupError:
        pass
    process.wait(10)
    deadline = time.monotonic() + 10  # the others are gone once the system has reaped them
    while group_alive(process) and time.monotonic() < deadline:
        time.sleep(0.05)


def wait_for(what: str, attempt: Callable[[], T | None], timeout: float = 90.0) -> T:
    """Call ``attempt`` every half second until it returns something other than None.

    ``attempt`` may set ``attempt.seen`` (a function attribute) to what it last saw, for the timeout's
    message.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = attempt()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            seen = getattr(attempt, "seen", None)
            raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s; last seen: {seen!r:.2000}")
        time.sleep(0.5)


def group_alive(process: subprocess.Popen[bytes]) -> bool:
    """Whether anything of the session ``process`` started (and leads) still runs."""
    try:
        os.killpg(process.pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class Server:
    """A running TensorBoard: its base URL and its process (the leader of its session)."""

    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def tensorboard_server(logdir: Path, scratch: Path) -> Iterator[Server]:
    """Serve ``logdir`` with TensorBoard's default fast loader; yield it; always stop it (and its session)."""
    scratch.mkdir(parents=True, exist_ok=True)
    log = scratch / "tensorboard.log"
    command = [
        sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1",
        "--port", "0", "--load_fast", "true", "--samples_per_plugin", "images=100", "--reload_interval", "1",
    ]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=scratch, env=_scratch_env(scratch), stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def url() -> str | None:
            match = _URL.search(log.read_bytes())
            if match is None and process.poll() is not None:
                raise RuntimeError(f"tensorboard exited ({process.returncode}): {log.read_text()}")
            return match.group(1).decode() if match else None

        yield Server(wait_for("TensorBoard to listen", url), process)
    finally:
        _stop(process)


def get(base: str, route: str, **query: Any) -> bytes:
    """The body of ``GET base + route?query``."""
    address = base.rstrip("/") + route + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(address, timeout=30) as response:
        body: bytes = response.read()
    return body


def get_json(base: str, route: str, **query: Any) -> Any:
    """``GET`` a JSON route."""
    return json.loads(get(base, route, **query))


def chromium_path() -> str | None:
    """Debian's ``chromium`` (``apt-get install chromium``), or None."""
    return shutil.which("chromium")


class Chromium:
    """Headless Chromium with one page, driven through the DevTools protocol on a pipe.

    Use as a context manager; the browser is always stopped when the block ends.

    Args:
        scratch: its profile, home and temporary files.
        width: the page's width in CSS pixels.
        height: the page's height (tall, so every card of a dashboard is laid out and loads).
    """

    def __init__(self, scratch: Path, width: int = 1280, height: int = 2400) -> None:
        executable = chromium_path()
        if executable is None:
            raise FileNotFoundError("chromium")
        scratch.mkdir(parents=True, exist_ok=True)
        # Its own temporary folder, with a short path: its singleton socket's path must fit a socket address.
        self._temporary = tempfile.mkdtemp(prefix="chromium-")
        env = {**_scratch_env(scratch), "TMPDIR": self._temporary}
        ours_read, theirs_write = os.pipe()  # results: the browser writes on its fd 4
        theirs_read, ours_write = os.pipe()  # commands: the browser reads its fd 3
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            f"--user-data-dir={scratch / 'profile'}", "--remote-debugging-pipe",
            f"--window-size={width},{height}", "about:blank",
        ]
        shell = f'exec "$0" "$@" 3<&{theirs_read} 4>&{theirs_write}'  # the protocol's descriptors 3 and 4
        with (scratch / "chromium.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", shell, executable, *flags], pass_fds=(theirs_read, theirs_write), cwd=scratch,
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        os.close(theirs_read)
        os.close(theirs_write)
        self._out = os.fdopen(ours_write, "wb", buffering=0)
        self._in = os.fdopen(ours_read, "rb", buffering=0)
        self._buffer = b""
        self._id = 0
        self.session = ""

    def __enter__(self) -> Chromium:
        try:
            target = self.send("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, method: str, **params: Any) -> Any:
        """Send one command (to the page, once attached) and return its result."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        self._out.write(json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = self._in.read(1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed its DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"the page's script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        """Ask the browser to close, then stop its process group whatever it did."""
        try:
            if self.process.poll() is None:
                self.send("Browser.close")
        except (OSError, RuntimeError):
            pass
        finally:
            for stream in (self._out, self._in):
                stream.close()
            _stop(self.process)
            shutil.rmtree(self._temporary, ignore_errors=True)
