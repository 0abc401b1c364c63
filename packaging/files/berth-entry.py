#!/opt/berth/bin/python
# ruff: noqa: UP036, UP031, RUF005, S606 - Python 2.7 syntax on purpose (see below)
"""berth, run from the package's private runtime.

/usr/bin/berth starts this file as ``python3 -I -S /opt/berth/bin/berth ARGS``: the standard library and
/opt/berth/lib (berth and its pure-Python dependencies) are the only things importable. Keep this file free of
syntax newer than Python 2.7 so that a too-old interpreter prints a clear message rather than a SyntaxError.
"""
import os
import sys

if sys.version_info < (3, 10):
    sys.stderr.write(
        "berth: needs Python 3.10 or newer, but %s is %d.%d; install python3.11 (or newer) or set BERTH_PYTHON\n"
        % (sys.executable, sys.version_info[0], sys.version_info[1])
    )
    sys.exit(127)

HERE = os.path.realpath(__file__)
if not (sys.flags.isolated and sys.flags.no_site):
    # Started some other way (`python3 /opt/berth/bin/berth`): start again isolated, so site-packages never leak in.
    os.execv(sys.executable, [sys.executable, "-I", "-S", HERE] + sys.argv[1:])

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "lib"))

from agent.cli.main import main  # noqa: E402 - sys.path must be set first

sys.exit(main())
