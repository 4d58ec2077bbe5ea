#!/usr/bin/env python3
"""Stall one thread of a running process, and only that thread, for a while: a hung worker as
a test sees it from outside (Python 3 standard library only).

  stall_thread.py TID SECONDS

SIGSTOP cannot do this: a stop signal stops the whole thread group, control thread included.
ptrace can: PTRACE_SEIZE attaches to one thread without stopping anything, PTRACE_INTERRUPT then
puts that thread alone in a ptrace stop; the process's other threads run on. The tracer waits
for the thread's events (a traced thread that dies stays a zombie until its tracer reaps it,
which would hold up the whole process's exit), and detaches after SECONDS if the thread still
lives. Prints "stalled TID" once the thread is stopped, then "exited" or "released".
"""

import ctypes
import os
import sys
import time

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL, WNOHANG = 0x40000000, 1

libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.ptrace.restype = ctypes.c_long


def ptrace(req, tid):
    if libc.ptrace(req, tid, None, None) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"ptrace({req:#x}, {tid}): {os.strerror(e)}")


def main():
    tid, seconds = int(sys.argv[1]), float(sys.argv[2])
    ptrace(PTRACE_SEIZE, tid)
    ptrace(PTRACE_INTERRUPT, tid)
    # The interrupt stop is reported like any stop: wait for it, so "stalled" is true.
    _, status = os.waitpid(tid, WALL)
    if not os.WIFSTOPPED(status):
        print("exited", flush=True)
        return
    print(f"stalled {tid}", flush=True)
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            pid, status = os.waitpid(tid, WALL | WNOHANG)
        except ChildProcessError:
            print("exited", flush=True)
            return
        if pid and (os.WIFEXITED(status) or os.WIFSIGNALED(status)):
            print("exited", flush=True)
            return
        time.sleep(0.01)
    try:
        ptrace(PTRACE_DETACH, tid)
        print("released", flush=True)
    except OSError:
        print("exited", flush=True)


if __name__ == "__main__":
    main()
