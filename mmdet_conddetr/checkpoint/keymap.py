"""Reversible key renaming from pairs of name templates.

A template is a parameter name with placeholders, e.g.
``'transformer.decoder.layers.{n}.ca_v_proj.{w}'``. Placeholders match one
dot-free piece of a name:

* ``{w}``: ``weight`` or ``bias``;
* ``{bn}``: a BatchNorm tensor (``weight``, ``bias``, ``running_mean``,
  ``running_var``, ``num_batches_tracked``);
* any other name (``{n}``, ``{b}`` ...): a non-negative integer.

A :class:`KeyMap` is an ordered list of ``(a, b)`` template pairs. Converting
``a -> b`` matches every key against the ``a`` templates (first full match
wins) and fills the ``b`` template with the captured pieces; :meth:`inverse`
swaps the pairs. Only renaming happens here: tensors are passed through
untouched, and every key either matches a rule or is reported as unmatched.
"""
import re
from collections import OrderedDict
from typing import Dict, List, Mapping, Sequence, Tuple

from ..errors import CheckpointError

__all__ = ['KeyMap', 'Converted', 'chain']

_PLACEHOLDER = re.compile(r'\{(\w+)\}')
_FIELD_PATTERNS = {
    'w': r'weight|bias',
    'bn': r'weight|bias|running_mean|running_var|num_batches_tracked',
}
_DEFAULT_FIELD = r'\d+'


def _compile(template: str) -> 're.Pattern':
    pieces, last, seen = [], 0, set()
    for match in _PLACEHOLDER.finditer(template):
        name = match.group(1)
        if name in seen:
            raise ValueError(
                f'placeholder {{{name}}} repeated in {template!r}')
        seen.add(name)
        pieces.append(re.escape(template[last:match.start()]))
        field = _FIELD_PATTERNS.get(name, _DEFAULT_FIELD)
        pieces.append(f'(?P<{name}>{field})')
        last = match.end()
    pieces.append(re.escape(template[last:]))
    return re.compile(''.join(pieces))


def _fields(template: str) -> set:
    return set(_PLACEHOLDER.findall(template))


class Converted:
    """Result of renaming a state dict.

    Attributes:
        state_dict (OrderedDict): Renamed tensors.
        unmatched (list[str]): Input keys no rule matched (original names).
        origin (dict): For every output key, the input key it came from.
    """

    def __init__(self):
        self.state_dict: 'OrderedDict[str, object]' = OrderedDict()
        self.unmatched: List[str] = []
        self.origin: Dict[str, str] = {}

    def put(self, key: str, value, origin: str) -> None:
        if key in self.state_dict:
            raise CheckpointError(
                f'two checkpoint keys map to {key!r}: {self.origin[key]!r} '
                f'and {origin!r}')
        self.state_dict[key] = value
        self.origin[key] = origin


class KeyMap:
    """Ordered ``(a, b)`` template pairs; see the module docstring.

    Args:
        rules: The template pairs. Both templates of a pair must use the same
            placeholders.
    """

    def __init__(self, rules: Sequence[Tuple[str, str]]):
        self.rules: List[Tuple[str, str]] = []
        self._compiled = []
        for a, b in rules:
            if _fields(a) != _fields(b):
                raise ValueError(f'templates {a!r} and {b!r} use different '
                                 'placeholders')
            self.rules.append((a, b))
            self._compiled.append((_compile(a), b))

    def __add__(self, other: 'KeyMap') -> 'KeyMap':
        return KeyMap(self.rules + other.rules)

    def inverse(self) -> 'KeyMap':
        """The map with every pair swapped (``b -> a``)."""
        return KeyMap([(b, a) for a, b in self.rules])

    def rename(self, key: str):
        """The renamed key, or None if no rule matches."""
        for pattern, target in self._compiled:
            match = pattern.fullmatch(key)
            if match:
                return target.format(**match.groupdict())
        return None

    def convert(self,
                state_dict: Mapping[str, object],
                passthrough: bool = False) -> Converted:
        """Rename every key of ``state_dict``.

        Args:
            state_dict: Input tensors.
            passthrough: Keep unmatched keys unchanged in the output instead
                of reporting them in ``unmatched``.
        """
        result = Converted()
        for key, value in state_dict.items():
            new_key = self.rename(key)
            if new_key is None:
                if passthrough:
                    result.put(key, value, key)
                else:
                    result.unmatched.append(key)
                continue
            result.put(new_key, value, key)
        return result


def chain(first: Converted, second: Converted) -> Converted:
    """Compose two renaming steps: ``second`` was computed from
    ``first.state_dict``; origins and unmatched keys of the result refer to
    the keys given to ``first``."""
    result = Converted()
    result.unmatched = list(first.unmatched) + [
        first.origin.get(key, key) for key in second.unmatched
    ]
    for key, value in second.state_dict.items():
        middle = second.origin[key]
        result.put(key, value, first.origin.get(middle, middle))
    return result
