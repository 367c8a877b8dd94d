"""pyrite: microVMs and unikernels in Python, directly on Linux KVM."""
__version__ = "0.1.0"


def __getattr__(name):
    # Lazy: `import pyrite` stays cheap for the CLI and the VMM process.
    if name in ("MicroVM", "VmExit", "BuildError"):
        from pyrite import microvm
        return getattr(microvm, name)
    raise AttributeError(f"module 'pyrite' has no attribute {name!r}")
