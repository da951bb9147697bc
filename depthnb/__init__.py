__version__ = "0.0.1"

# The package's front door, imported lazily so that `import depthnb` does not import torch:
# depthnb.load (a trained run), depthnb.train (a config → a trained run),
# depthnb.evaluate (one evaluation loop).
_LAZY = {'load': 'api', 'train': 'engine', 'evaluate': 'evaluation'}


def __getattr__(name):
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
    raise AttributeError(f"module 'depthnb' has no attribute {name!r}")
