"""PyYAML with line numbers kept and keys given twice refused (imported when a YAML file is parsed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError
from pipeline.yamlfile import LineDict, display


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping gives the same key twice (PyYAML alone would silently keep the last one)."""

    def __init__(self, key: Any, first: yaml.Mark, second: yaml.Mark) -> None:
        where = (f"on line {first.line + 1}" if first.line == second.line
                 else f"(lines {first.line + 1} and {second.line + 1})")
        super().__init__(None, None, f"key {key!r} is given twice {where}; keep one", second)
        self.key = key
        self.where = where


class _LineLoader(yaml.SafeLoader):
    pass


# The C parser when PyYAML has it (sscan reads every YAML file of the project); construction is Python either way.
class _FastLineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    pass


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _reject_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """Keys given twice in this mapping itself; keys that ``<<`` merges in may be overridden, as YAML intends."""
    seen: dict[Any, yaml.Mark] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.setdefault(key, key_node.start_mark)
        except TypeError:  # an unhashable key: reported by the caller
            continue
        if first is not key_node.start_mark:
            raise DuplicateKeyError(key, first, key_node.start_mark)


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    _reject_duplicates(loader, node)
    loader.flatten_mapping(node)
    result = LineDict()
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be plain scalars", key_node.start_mark
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[str(key)] = key_node.start_mark.line + 1
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_FastLineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(text: str) -> Any:
    """Parse one YAML document from text, keys given twice refused.

    Raises:
        yaml.YAMLError: invalid YAML; ``DuplicateKeyError`` (a MarkedYAMLError) for a key given twice.
    """
    return yaml.load(text, Loader=_LineLoader)  # nosec B506 - _LineLoader is a SafeLoader subclass


def parse_all(text: str) -> list[Any]:
    """Parse every document of a YAML stream (the C parser when available), keys given twice refused.

    Raises:
        yaml.YAMLError: as :func:`parse`.
    """
    return list(yaml.load_all(text, Loader=_FastLineLoader))  # nosec B506 - a SafeLoader subclass


def _construct_timestamp(loader: _LineLoader, node: yaml.ScalarNode) -> Any:
    # PyYAML raises a bare ValueError (a traceback) for a date-shaped impossible date like 2027-02-30.
    try:
        return yaml.constructor.SafeConstructor.construct_yaml_timestamp(loader, node)
    except ValueError as exc:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value} is not a valid date ({exc})", node.start_mark
        ) from None


_LineLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def load_yaml(path: Path) -> Any:
    """Parse one YAML file.

    Raises:
        ConfigError: the file is missing, unreadable or not valid YAML, or a mapping gives a key
            twice (names the line, and both lines and the key for a duplicate).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{display(path)}: file not found; create it (see docs/configuration.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{display(path)}: cannot read: {exc}") from None
    try:
        return parse(text)
    except DuplicateKeyError as exc:
        assert exc.problem_mark is not None
        raise ConfigError(f"{display(path)}:{exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"{display(path)}{where}: YAML syntax error: {problem}; fix the syntax") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{display(path)}: YAML error: {exc}") from None
