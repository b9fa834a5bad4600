"""A crash point for a real `tunelab` process: with TUNELAB_FAULT_POINT=method:occurrence:signal
in its environment and this folder on its PYTHONPATH, the process sends itself the signal right
after that storage call returns (see ../crashpoints.py). Used by benchmarks/chaos.py; nothing
is installed without the variable."""

import os
import sys

_POINT = os.environ.get("TUNELAB_FAULT_POINT")
if _POINT:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import crashpoints

    _method, _occurrence, _signal = _POINT.split(":")
    crashpoints.install(crashpoints.Point(_method, int(_occurrence), int(_signal)))
