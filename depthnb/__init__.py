__version__ = "0.0.1"


def __getattr__(name):
    # `depthnb.load(path)` without importing torch at `import depthnb`
    if name == 'load':
        from .api import load
        return load
    raise AttributeError(f"module 'depthnb' has no attribute {name!r}")
