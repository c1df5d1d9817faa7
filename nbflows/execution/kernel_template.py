"""The template process that forks IPython kernels (run by `nbflows.execution.kernel_fork`, not imported).

Started once per Python executable with ``python -c <this file's text> <control fd>``: it imports
ipykernel, IPython and the rest of a kernel's start-up once, then forks one child per kernel
asked for. A child is a fresh process (own namespace, own sockets) that applies its run's working
directory and environment and only then starts `IPKernelApp`, so a kernel costs a fork and the
app's set-up instead of an interpreter start and a second of imports.

Only the standard library and ipykernel are imported here (the kernel's Python may not have
nbflows). Nothing here may start a thread or open a zmq socket before forking: a forked child
would inherit a lock held by a thread that does not exist in it.

Protocol on the control socket, one JSON object per line:
  → {"id": n, "argv": [...], "cwd": "...", "env": {...}}
  ← {"id": n, "pid": pid} or {"id": n, "error": "...", "errno": e}
  ← {"exit": pid, "returncode": code}   (negative: killed by that signal, as `Popen`)
  ← {"ready": true, "threads": n} once the imports are done.
When the control socket closes (the worker exited or was killed), every child is killed.
"""

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGKILL this process when its parent dies (Linux), even by kill -9."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _preload() -> None:
    # ipykernel_launcher's own imports, plus what IPKernelApp.initialize imports on the way.
    import ipykernel.debugger
    import ipykernel.ipkernel
    import ipykernel.kernelapp
    import ipykernel.zmqshell  # noqa: F401
    import IPython.core.completer
    import IPython.core.interactiveshell  # noqa: F401
    import jupyter_client.session  # noqa: F401

    # What IPKernelApp.initialize and the first execution import on top (found by comparing
    # sys.modules of a template and of a started kernel).
    for name in (
        "IPython.core.completerlib",
        "IPython.core.debugger",
        "IPython.core.logger",
        "IPython.core.oinspect",
        "IPython.extensions.storemagic",
        "IPython.utils.wildcard",
        "faulthandler",
        "importlib.readers",
        "pdb",
        "runpy",
        "sqlite3",
        "tornado.platform.asyncio",
    ):
        with contextlib.suppress(ImportError):
            __import__(name)

    # The first cell of every kernel compiles the input transformers' regular expressions;
    # compiled here, they sit in `re`'s cache that every child inherits. (A plain object, not
    # one of IPython's singletons: nothing of it is left in the kernels but that cache.)
    with contextlib.suppress(Exception):
        from IPython.core.inputtransformer2 import TransformerManager

        for code in ("pass\n", "x = 1\n", "print(x)\n", "%time 1\n"):
            TransformerManager().transform_cell(code)

    for name in os.environ.get("NBFLOWS_FORK_PRELOAD", "").split(","):
        if name.strip():
            try:
                __import__(name.strip())
            except Exception as exc:
                print(f"nbflows kernel template: cannot preload {name!r}: {exc}", file=sys.stderr)


def _child(control: socket.socket, wake: int, argv: list, cwd: str, env: dict) -> None:
    """In the forked child: become the kernel. Never returns."""
    code = 1
    try:
        os.setsid()  # its own process group: a kill of the group reaches its subprocesses
        _die_with_parent()
        control.close()
        os.close(wake)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(cwd)
        old_path = os.environ.get("PYTHONPATH", "")
        old_tz = os.environ.get("TZ")
        os.environ.clear()
        os.environ.update(env)
        # As jupyter_client's launcher does: ipykernel then watches its parent and stays quiet.
        os.environ["JPY_PARENT_PID"] = str(os.getppid())
        new_path = env.get("PYTHONPATH", "")
        if new_path != old_path:  # what the interpreter would have put on sys.path at start
            extra = [p for p in new_path.split(os.pathsep) if p and p not in sys.path]
            sys.path[1:1] = extra
        if env.get("TZ") != old_tz:
            import time

            time.tzset()  # the time module read TZ when the template imported it
        _reseed()
        sys.argv = ["ipykernel_launcher", *argv]
        from ipykernel import kernelapp

        # IPKernelApp read JPY_PARENT_PID when the template imported it (unset then): give it
        # the parent as a launched kernel has it, so that it watches its parent and does not
        # print its "Ctrl-C will not work" note for a terminal.
        app = kernelapp.IPKernelApp.instance(parent_handle=os.getppid())
        if os.environ.get("NBFLOWS_FORK_PROFILE"):
            import cProfile

            cProfile.runctx(
                "app.initialize(argv)",
                globals(),
                {"app": app, "argv": argv},
                os.environ["NBFLOWS_FORK_PROFILE"] + f".{os.getpid()}",
            )
        else:
            app.initialize(argv)
        app.start()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reseed() -> None:
    # `random` reseeds itself after a fork; modules preloaded on request may not.
    np = sys.modules.get("numpy")
    if np is not None:
        with contextlib.suppress(Exception):
            np.random.seed()


def main() -> None:
    import threading

    _die_with_parent()
    control = socket.socket(fileno=int(sys.argv[1]))
    control.setblocking(True)
    # Run in "/" and leave '' off sys.path: each child starts from its own cwd like
    # `python -m ipykernel_launcher`, which removes '' too (IPython adds it back).
    while "" in sys.path:
        sys.path.remove("")
    _preload()
    # Everything imported so far is shared with the children copy-on-write; keep the collector
    # from touching (and so copying) it in every child.
    gc.collect()
    gc.freeze()
    # One thread, no zmq context: safe to fork.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    children: set = set()
    pending = b""

    def send(obj: dict) -> None:
        control.sendall(json.dumps(obj).encode() + b"\n")

    send({"ready": True, "threads": threading.active_count()})
    try:
        while True:
            readable, _, _ = select.select([control.fileno(), wake_r], [], [])
            if wake_r in readable:
                os.read(wake_r, 512)
            while children:  # reap every child that ended, and say so
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                children.discard(pid)
                send({"exit": pid, "returncode": os.waitstatus_to_exitcode(status)})
            if control.fileno() not in readable:
                continue
            data = control.recv(65536)
            if not data:
                break  # the worker is gone
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                request = json.loads(line)
                cwd = request["cwd"]
                if not os.path.isdir(cwd):
                    send({"id": request["id"], "error": f"No such directory: {cwd!r}", "errno": 2})
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(control, wake_r, request["argv"], cwd, request["env"])
                children.add(pid)
                send({"id": request["id"], "pid": pid})
    finally:
        for pid in children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
