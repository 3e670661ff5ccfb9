"""Recognising an exercise that only hands its work to a helper the student pack ships.

The pack's helpers include a batch classifier (`helpers.inference.classify_texts`) and
training utilities whose default step is a complete `train_step` (`helpers.sanity`,
`helpers.training`). An exercise function that calls one of them earns nothing: the check reads
the function's code (every name it uses, in nested functions and lambdas too, and the modules it
imports), resolves each name in the namespace the function was defined in, whatever alias the
student gave it, and raises `DelegationError` naming the helper.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterator

import helpers.inference
import helpers.sanity
import helpers.training

CLASSIFY_TEXT_HELPERS = {
    "helpers.inference.classify_texts": helpers.inference.classify_texts,
}
TRAIN_STEP_HELPERS = {
    "helpers.sanity.overfit_one_batch": helpers.sanity.overfit_one_batch,
    "helpers.sanity.lr_finder": helpers.sanity.lr_finder,
    "helpers.sanity._default_step": helpers.sanity._default_step,
    "helpers.training.train_classifier": helpers.training.train_classifier,
}


class DelegationError(AssertionError):
    """The exercise's function hands its work to a helper that implements the exercise."""


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)


def _reachable(names: set[str], namespace: dict, depth: int = 3) -> list[object]:
    """The objects the names denote in `namespace`, and their attributes among `names` when
    they are modules (`helpers.inference.classify_texts` is three names), `depth` levels deep."""
    builtins = namespace.get("__builtins__")
    found = [namespace[n] if n in namespace else getattr(builtins, n, None) for n in names]
    modules = [obj for obj in found if isinstance(obj, types.ModuleType)]
    for _ in range(depth):
        attributes = [getattr(module, n, None) for module in modules for n in names]
        found += attributes
        modules = [obj for obj in attributes if isinstance(obj, types.ModuleType)]
    return [obj for obj in found if obj is not None]


def helpers_used(function: Callable, forbidden: dict[str, object]) -> list[str]:
    """The helpers of `forbidden` (dotted name -> object) that `function`'s code refers to."""
    code = getattr(function, "__code__", None)
    if code is None:  # a class or a callable object: look at its __call__
        function = getattr(type(function), "__call__", None)
        code = getattr(function, "__code__", None)
        if code is None:
            return []
    names = {name for part in _code_objects(code) for name in part.co_names}
    objects = _reachable(names, getattr(function, "__globals__", {}))
    objects += [getattr(cell, "cell_contents", None) for cell in function.__closure__ or ()]
    by_identity = {id(obj): dotted for dotted, obj in forbidden.items()}
    found = {by_identity[id(obj)] for obj in objects if id(obj) in by_identity}
    imported = {dotted for dotted in forbidden  # `from helpers.inference import ...` inside
                if dotted.rsplit(".", 1)[0] in names and dotted.rsplit(".", 1)[1] in names}
    return sorted(found | imported)


def own_work(function: Callable, exercise: str, forbidden: dict[str, object]) -> None:
    """Raise DelegationError when `function` calls a helper that implements `exercise`."""
    used = helpers_used(function, forbidden)
    if used:
        raise DelegationError(
            f"{exercise} hands its work to the pack's {used[0]}, which implements this "
            "exercise: no points for it. Write the steps yourself (the helper is there to "
            "compare with once your own function works)."
        )


def own_classify_text(classify_text: Callable) -> None:
    """classify_text does not call the pack's batch classifier."""
    own_work(classify_text, "classify_text", CLASSIFY_TEXT_HELPERS)


def own_train_step(train_step: Callable) -> None:
    """train_step does not call a pack helper that runs a training step."""
    own_work(train_step, "train_step", TRAIN_STEP_HELPERS)
