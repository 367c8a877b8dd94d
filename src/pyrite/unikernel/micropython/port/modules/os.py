# os: MicroPython's built-in os, plus os.environ (the environment from the VM's command line).
from uos import *
from pyrite import environ as _environ

environ = _environ()
