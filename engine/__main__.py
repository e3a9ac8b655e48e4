"""python -m engine. Once main returns, the exit hooks run (logging, multiprocessing,
torch's) and the process ends without the interpreter's teardown: unloading torch's
thousands of modules took a second of every engine process on two cores, and nothing the
engine writes waits for it (each file is closed, and fsynced where it matters, before
main returns)."""
import atexit
import os
import sys

from engine.cli import main

code = main()
atexit._run_exitfuncs()
for stream in (sys.stdout, sys.stderr):
    try:
        stream.flush()
    except OSError:  # a closed pipe (| head): nothing more to say
        pass
os._exit(code if isinstance(code, int) else 0)
