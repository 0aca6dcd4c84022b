"""The predictor's face front end in a worker process (``front_end="process"``, the default on POSIX).

Decoding, detection, the 68-point fit, alignment, the JPEG round trip and the crops (:class:`FaceStream`) cost
about as much per frame as a dlib_resnet forward pass. In a thread of the networks' process they share its GIL:
dlib's shape predictor keeps the GIL for its whole call (1-2 ms), and PyTorch needs it between operations, so the
networks wait (a dlib_resnet pass ~20 % slower beside the front-end thread than alone; none beside a front-end
process). Here the front end runs in a child Python process (``python -m au_transfer.predict.face_worker``), started
when the :class:`~au_transfer.predict.Predictor` is built so that it loads dlib's models while the parent loads
the networks, and serving one input after another.

The child's stdin and stdout carry pickled messages (:class:`multiprocessing.connection.Connection`; anything the
libraries print goes to stderr). Parent to child: the face settings and log level once, then per input
``("input", options)``, or None to end. Child to parent: per frame ``("frame", FrameFaces)``, then ``("end",
detections)``, or ``("error", exception)``; ``("log", record)`` at any time (re-emitted by the parent's logging, so
warnings such as a video that stops decoding early reach the caller as from a thread). An input the caller stops
reading early ends the child (a fresh one starts for the next input); a child that dies is an error naming the input
and its exit code.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..io import iter_ahead
from .faces import FaceStream, FrameFaces


class FaceWorkerError(RuntimeError):
    """The face front end's process could not start or ended unexpectedly; the message says which input."""


class _Forward(logging.Handler):
    """In the child: log records to the parent, as ``("log", record attributes)``."""

    def __init__(self, conn: Connection) -> None:
        super().__init__()
        self.conn = conn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            d = dict(record.__dict__, msg=record.getMessage(), args=None, exc_info=None, exc_text=None)
            self.conn.send(("log", d))
        except Exception:  # noqa: BLE001  (a record that cannot be sent must not end the front end)
            self.handleError(record)


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _send(conn: Connection, msg: Any) -> bool:
    """Send to the parent; False when it is gone (the child then ends)."""
    try:
        conn.send(msg)
        return True
    except OSError:
        return False


def main() -> None:
    """The child: ``python -m au_transfer.predict.face_worker`` (messages on stdin / stdout, module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent ends the child
    out_fd = os.dup(1)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the messages
    recv, send = Connection(0, writable=False), Connection(out_fd, readable=False)
    try:
        settings, level = recv.recv()
    except EOFError:
        return
    root = logging.getLogger()
    root.handlers[:] = [_Forward(send)]
    root.setLevel(level)
    try:
        import cv2

        cv2.setNumThreads(1)  # one frame at a time; the other cores run the networks
    except Exception:  # noqa: BLE001
        pass
    try:
        landmarker, failed = settings.landmarker(), None
    except Exception as exc:  # noqa: BLE001  (said for each input)
        landmarker, failed = None, _picklable(exc)
    while True:
        try:
            msg = recv.recv()
        except EOFError:
            return
        if msg is None:
            return
        _, opts = msg
        if failed is not None:
            if not _send(send, ("error", failed)):
                return
            continue
        stream = FaceStream(opts["src"], settings, landmarker, largest_only=opts["largest_only"],
                            detect_every=opts["detect_every"], video=opts["video"], crops=opts["crops"],
                            every=opts.get("every", 1), fps=opts.get("fps"))
        try:
            for item in stream:
                if not _send(send, ("frame", item)):
                    return
        except Exception as exc:  # noqa: BLE001  (raised in the parent)
            if not _send(send, ("error", _picklable(exc))):
                return
            continue
        if not _send(send, ("end", stream.detections)):
            return


def _stop(proc: subprocess.Popen, conns: Sequence[Connection]) -> None:
    """End a child: None (it returns), else kill it after a second; close the parent's ends."""
    try:
        conns[0].send(None)
    except (OSError, ValueError):
        pass
    for c in conns:
        c.close()
    try:
        proc.wait(timeout=1.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class FaceWorker:
    """The parent's handle on the front-end process of one face settings (module docstring).

    Started at construction; :meth:`frames` iterates an input's :class:`FrameFaces`, at most ``ahead`` frames
    buffered here (the child waits when they are not taken); :meth:`close` ends the child (also done when the
    worker is garbage-collected or Python exits).
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.detections = 0
        self._proc: subprocess.Popen | None = None
        self._conns: tuple[Connection, Connection] | None = None
        self._finalizer: Any = None
        self._start()

    def _start(self) -> None:
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        pkg = str(Path(__file__).resolve().parents[2])  # the folder holding au_transfer: the child imports this copy
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pkg, os.environ.get("PYTHONPATH")])))
        flags = ["-P"] if sys.version_info >= (3, 11) else []  # no current folder on the child's path
        try:
            proc = subprocess.Popen([sys.executable, *flags, "-m", "au_transfer.predict.face_worker"],
                                    stdin=child_in, stdout=child_out, env=env, close_fds=True)
        except OSError as exc:
            for fd in (child_in, to_child, from_child, child_out):
                os.close(fd)
            raise FaceWorkerError(f"could not start the face front end ({sys.executable}): {exc}") from exc
        os.close(child_in)
        os.close(child_out)
        conns = (Connection(to_child, readable=False), Connection(from_child, writable=False))
        level = logging.getLogger("au_transfer").getEffectiveLevel()
        try:
            conns[0].send((self.settings, level))
        except OSError:
            pass  # a child that died at once is reported by the first input
        self._proc, self._conns = proc, conns
        self._finalizer = weakref.finalize(self, _stop, proc, conns)

    def close(self) -> None:
        """End the child (idempotent)."""
        if self._finalizer is not None:
            self._finalizer()
        self._proc = self._conns = self._finalizer = None

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
        self.close()

    def _messages(self, proc: subprocess.Popen, recv: Connection, src: str | Path) -> Iterator[FrameFaces]:
        """The child's answer for one input: its frames; its log records re-emitted here; its error raised."""
        while True:
            try:
                kind, value = recv.recv()
            except (EOFError, OSError):
                try:
                    code = proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    code = None
                raise FaceWorkerError(f"the face front end's process ended (exit code {code}) while reading "
                                      f"{src}") from None
            if kind == "log":
                record = logging.makeLogRecord(value)
                logging.getLogger(record.name).handle(record)
            elif kind == "frame":
                yield value
            elif kind == "end":
                self.detections = int(value)
                return
            else:
                raise value

    def frames(self, src: str | Path, *, largest_only: bool, detect_every: int, video: bool,
               crops: Sequence[tuple[str, int]] = (), ahead: int = 64,
               on_frame: Callable[[], Any] | None = None, every: int = 1,
               fps: float | None = None) -> Iterator[FrameFaces]:
        """The :class:`FrameFaces` of ``src`` from the child, in order, received by a thread up to ``ahead`` frames
        ahead (:func:`~au_transfer.io.iter_ahead`); ``on_frame`` is called as each arrives (a progress bar's
        update). An error of the child is raised here; stopping early ends the child (it would go on sending this
        input's frames); one input at a time."""
        if self._proc is None or self._proc.poll() is not None:  # none yet, or it died: a fresh one
            self.close()
            self._start()
        proc, (send, recv) = self._proc, self._conns
        opts = {"src": str(src), "largest_only": bool(largest_only), "detect_every": int(detect_every),
                "video": bool(video), "crops": list(crops), "every": int(every),
                "fps": None if fps is None else float(fps)}
        try:
            send.send(("input", opts))
        except OSError:
            pass  # the child is gone: receiving says so
        return iter_ahead(self._messages(proc, recv, src), ahead, name="au-transfer-face-worker", on_item=on_frame,
                          on_early_stop=self._kill)


if __name__ == "__main__":
    main()
