"""Docker's path patterns (`.dockerignore`, COPY sources), matched in time linear in the path.

`*` and `?` never cross `/`; `**` matches anything; `**/` any number of leading directories;
`[...]` a class (`!` or `^` negates it, `a-z` ranges, `\\` escapes); `\\x` the character x.
A backtracking regex for such patterns can take exponential time (`*a*a*a*a*b` against a long
name): as Docker matches with Go's linear-time regexps, this runs the pattern as a set of states
advanced one character at a time. A pattern with at most two unbounded runs cannot blow up a
backtracking regex (the work is at most quadratic in the path), so those, nearly every pattern a
project has, run as a compiled regex instead: a project walk asks every path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.common.errors import InputError

LIT, ONE, CLASS, STAR, ANY, DIRS = range(6)
REGEX_MAX_RUNS = 2  # unbounded runs (`*`, `**`, `**/`) a pattern may have to be run as a regex


class BadPattern(InputError):
    """A pattern Docker refuses too (an empty or reversed class)."""


@dataclass(frozen=True)
class _Class:
    negate: bool
    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]

    def __contains__(self, ch: str) -> bool:
        inside = ch in self.chars or any(low <= ch <= high for low, high in self.ranges)
        return inside != self.negate


class Glob:
    """`match(path)`: whether the whole path matches (with `or_below`, or any path under a match)."""

    def __init__(self, text: str, or_below: bool = False):
        self.text = text
        self.or_below = or_below
        self.tokens = _tokens(text)
        self.regex = _regex(self.tokens, or_below)  # None: matched by the state machine below

    def match(self, path: str) -> bool:
        if self.regex is not None:
            return self.regex.fullmatch(path) is not None
        end = len(self.tokens)
        states = self._closure({(0, False)})
        for ch in path:
            if self.or_below and ch == "/" and (end, False) in states:
                return True
            following = set()
            for index, inside in states:
                if index == end:
                    continue
                kind, value = self.tokens[index]
                if kind == DIRS:  # entered (or still in) the `**/` group: it ends at a '/'
                    following.add((index, True))
                    if ch == "/":
                        following.add((index + 1, False))
                elif kind == ANY:
                    following.add((index, False))
                elif kind == STAR:
                    if ch != "/":
                        following.add((index, False))
                elif kind == ONE:
                    if ch != "/":
                        following.add((index + 1, False))
                elif kind == CLASS:
                    if ch in value:
                        following.add((index + 1, False))
                elif value == ch:
                    following.add((index + 1, False))
            if not following:
                return False
            states = self._closure(following)
        return (end, False) in states

    def _closure(self, states: set[tuple[int, bool]]) -> set[tuple[int, bool]]:
        """States plus those reached without a character: past a `*`, `**` or a `**/` not yet entered."""
        todo, seen = list(states), set(states)
        while todo:
            index, inside = todo.pop()
            if index < len(self.tokens) and not inside and self.tokens[index][0] in (STAR, ANY, DIRS):
                state = (index + 1, False)
                if state not in seen:
                    seen.add(state)
                    todo.append(state)
        return seen


def _regex(tokens: list[tuple[int, object]], or_below: bool) -> re.Pattern[str] | None:
    """The same pattern as a regex (for `fullmatch`), or None where backtracking could blow up."""
    if sum(kind in (STAR, ANY, DIRS) for kind, _ in tokens) > REGEX_MAX_RUNS:
        return None
    parts = []
    for kind, value in tokens:
        if kind == LIT:
            parts.append(re.escape(value))
        elif kind == ONE:
            parts.append("[^/]")
        elif kind == STAR:
            parts.append("[^/]*")
        elif kind == ANY:
            parts.append(".*")
        elif kind == DIRS:
            parts.append("(?:.*/)?")
        else:
            ranges = "".join(f"{re.escape(low)}-{re.escape(high)}" for low, high in value.ranges)
            chars = "".join(re.escape(ch) for ch in sorted(value.chars))
            parts.append(f"[{'^' if value.negate else ''}{chars}{ranges}]")
    return re.compile("".join(parts) + ("(?:/.*)?" if or_below else ""), re.DOTALL)


def _tokens(text: str) -> list[tuple[int, object]]:
    tokens: list[tuple[int, object]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if text.startswith("**", i):
            i += 2
            if i < len(text) and text[i] == "/":
                tokens.append((DIRS, None))
                i += 1
            elif not tokens or tokens[-1][0] != ANY:
                tokens.append((ANY, None))
            continue
        if ch == "*":
            if not tokens or tokens[-1][0] not in (STAR, ANY):
                tokens.append((STAR, None))
        elif ch == "?":
            tokens.append((ONE, None))
        elif ch == "[" and text.find("]", i + 2 if text[i + 1:i + 2] in ("!", "^") else i + 1) != -1:
            klass, i = _class(text, i)
            tokens.append((CLASS, klass))
        elif ch == "\\" and i + 1 < len(text):
            i += 1
            tokens.append((LIT, text[i]))
        else:
            tokens.append((LIT, ch))
        i += 1
    return tokens


def _class(text: str, start: int) -> tuple[_Class, int]:
    """The class starting at text[start] == '[', and the index of its closing ']'."""
    i = start + 1
    negate = text[i] in ("!", "^")
    if negate:
        i += 1
    items: list[str] = []
    while i < len(text) and text[i] != "]":
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        items.append(text[i])
        i += 1
    if i >= len(text):
        raise BadPattern(f"{text!r}: unterminated character class")
    if not items:
        raise BadPattern(f"{text!r}: empty character class")
    chars, ranges, k = set(), [], 0
    while k < len(items):
        if k + 2 < len(items) and items[k + 1] == "-":
            low, high = items[k], items[k + 2]
            if low > high:
                raise BadPattern(f"{text!r}: range {low}-{high} is reversed")
            ranges.append((low, high))
            k += 3
        else:
            chars.add(items[k])
            k += 1
    return _Class(negate, frozenset(chars), tuple(ranges)), i


def compile_pattern(text: str, *, or_below: bool = False) -> Glob:
    """Docker's pattern syntax; `or_below` also matches every path under a matching one."""
    return Glob(text, or_below)
