"""Import the MPT modeling code of llm-foundry 0.4.0 (the last with prefix_lm) without its training
stack.

The training framework (composer) of that era needs an old torch; the MPT modules only use it for
the Composer wrapper classes and metrics, so those imports are satisfied by inert stand-ins."""

import importlib.abc
import importlib.machinery
import os
import sys
import types
import warnings

warnings.filterwarnings("ignore")
ROOT = os.path.join(os.environ.get("FOUNDRY_04", ""), "llmfoundry")


class _Inert(types.ModuleType):
    __path__ = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "composer" or name.startswith("composer."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Inert(spec.name)

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
for name, path in (("llmfoundry", ROOT), ("llmfoundry.models", ROOT + "/models")):
    mod = types.ModuleType(name)
    mod.__path__ = [path]
    sys.modules[name] = mod
