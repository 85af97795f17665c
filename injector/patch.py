"""RFC 6902 JSON patch from the admitted pod to the mutated one (what AdmissionResponse.patch carries)."""

from __future__ import annotations

from typing import Any

__all__ = ["json_patch", "pointer"]


def pointer(parts: list[str | int]) -> str:
    """An RFC 6901 JSON pointer (`~` → `~0`, `/` → `~1`)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _diff_dict(old: dict[str, Any], new: dict[str, Any], path: list[str | int], ops: list[dict[str, Any]]) -> None:
    for key in old:
        if key not in new:
            ops.append({"op": "remove", "path": pointer([*path, key])})
    for key, value in new.items():
        if key not in old:
            ops.append({"op": "add", "path": pointer([*path, key]), "value": value})
        else:
            _diff(old[key], value, [*path, key], ops)


def _diff_list(old: list[Any], new: list[Any], path: list[str | int], ops: list[dict[str, Any]]) -> None:
    if len(new) < len(old):
        ops.append({"op": "replace", "path": pointer(path), "value": new})
        return
    for index, value in enumerate(new):
        if index < len(old):
            _diff(old[index], value, [*path, index], ops)
        else:
            ops.append({"op": "add", "path": pointer([*path, "-"]), "value": value})


def _diff(old: Any, new: Any, path: list[str | int], ops: list[dict[str, Any]]) -> None:
    if type(old) is type(new) and old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict):
        _diff_dict(old, new, path, ops)
    elif isinstance(old, list) and isinstance(new, list):
        _diff_list(old, new, path, ops)
    else:
        ops.append({"op": "replace", "path": pointer(path), "value": new})


def json_patch(old: Any, new: Any) -> list[dict[str, Any]]:
    """Operations turning `old` into `new`: appends stay appends, so concurrent defaults are not clobbered."""
    ops: list[dict[str, Any]] = []
    _diff(old, new, [], ops)
    return ops
