"""Regular expression -> minimal deterministic automaton over bytes, with Python's meaning.

Python's own parser (`sre_parse`, the parser of `re`) reads the pattern, so every pattern `re`
rejects is rejected with its message, and the language is the one `re.fullmatch` accepts on text
that is valid UTF-8 (anchors are implicit: the whole string must match). The set of characters a
one-character item matches (a literal, a class, `.`, `\\d \\w \\s` and their negations, all Unicode,
under (?i) with Python's case folding, e.g. the Kelvin sign for k and 'ſ' for s) is asked of `re`
itself: the runs that `(?:item)+` finds in the string of every code point. Backreferences,
lookaround, anchors, conditionals, possessive quantifiers and atomic groups (whose meaning is not
a regular language over the automaton, or not one this construction follows) are refused by name.
The rest is the sandbox's own:
1. Thompson's construction: each AST node becomes an NFA fragment with one start and one end,
   joined by epsilon moves; a character class becomes UTF-8 byte-range paths (`utf8_ranges`).
2. Subset construction over byte classes: bytes that every edge treats alike form one class,
   and a DFA state is the epsilon-closed set of NFA states reachable by a byte string. At most
   `MAX_DFA_STATES` states are made (a pattern like (a|b)*a(a|b){n} needs 2^(n+1)): the count is
   checked as they are made, so a pattern past the budget is refused before memory grows.
3. Moore's partition refinement: start from {accepting, rejecting} and split blocks whose
   states step to different blocks on some class, until stable: the minimal DFA (Myhill-Nerode).
4. Trimming: states from which no accepting state is reachable are removed (transitions to
   them become -1), so "the DFA has a transition" means "the text is still a prefix of a match".
"""

import dataclasses
import functools
import warnings

import numpy as np

from sandbox.errors import SandboxError
from sandbox.text.utf8_ranges import byte_sequences

with warnings.catch_warnings():  # the public names of re's parser, deprecated as modules but stable
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_compile
    import sre_constants as C
    import sre_parse

MAX_NFA_STATES = 200_000
MAX_DFA_STATES = 10_000  # table 10,000 x 256 int32 = 10 MiB; the token index grows with it (constrained.py)
_SURROGATES = (0xD800, 0xE000)
_REFUSED = {C.GROUPREF: "backreferences", C.GROUPREF_EXISTS: "conditional groups (?(1)...)",
            C.ASSERT: "lookaround (lookahead/lookbehind)", C.ASSERT_NOT: "lookaround (lookahead/lookbehind)",
            C.AT: "anchors (^ $ \\A \\Z \\b \\B; the whole string must match anyway)",
            C.POSSESSIVE_REPEAT: "possessive quantifiers (*+ ++ ?+ {m,n}+)", C.ATOMIC_GROUP: "atomic groups (?>...)"}
_SUPPORTED = ("supported: literals, classes, \\d \\w \\s, . * + ? {m,n} (lazy too) | ( ), flags (?i) (?s) (?a) (?x)")


@dataclasses.dataclass(frozen=True)
class ByteDFA:
    """A trimmed minimal DFA: next_Sx256[s, b] is the state after byte b (-1: no match can follow)."""

    pattern: str
    next_Sx256: np.ndarray
    accept_S: np.ndarray
    initial: int = 0

    @property
    def num_states(self) -> int:
        return len(self.accept_S)

    def walk(self, data: bytes, state: int | None = None) -> int:
        """The state after reading `data` from `state` (default initial); -1 once no match can follow."""
        state = self.initial if state is None else state
        for b in data:
            if state < 0:
                break
            state = int(self.next_Sx256[state, b])
        return state

    def fullmatch(self, data: bytes) -> bool:
        """True iff `data` (UTF-8) is in the language."""
        s = self.walk(data)
        return s >= 0 and bool(self.accept_S[s])


def parse(pattern: str):
    """Python's parse tree of `pattern`; SandboxError with `re`'s message if `re` rejects it."""
    if not isinstance(pattern, str):
        raise SandboxError(f"a regex pattern must be a string, got {type(pattern).__name__}")
    try:
        return sre_parse.parse(pattern)
    except (C.error, OverflowError, RecursionError) as e:
        raise SandboxError(f"regex {pattern!r} is not valid syntax: {e}") from None


@functools.cache
def _all_characters() -> str:
    """Every code point UTF-8 can write (the surrogates aside), in order."""
    points = np.concatenate([np.arange(_SURROGATES[0], dtype=np.uint32),
                             np.arange(_SURROGATES[1], 0x110000, dtype=np.uint32)])
    return points.tobytes().decode("utf-32-le")


def _code_point(index: int) -> int:
    return index if index < _SURROGATES[0] else index + _SURROGATES[1] - _SURROGATES[0]


_RANGES: dict[tuple[str, int], tuple] = {}  # (one-character item, flags) -> its ranges, for the process


def _char_ranges(node, flags: int) -> tuple[tuple[int, int], ...]:
    """The code-point ranges one-character `node` matches under `flags`, as `re` finds them."""
    key = (str(node), flags)
    if key not in _RANGES:
        _RANGES[key] = _runs(node, flags)
    return _RANGES[key]


def _runs(node, flags: int) -> tuple[tuple[int, int], ...]:
    state = sre_parse.State()
    state.flags = flags
    item = sre_parse.SubPattern(state, [node])
    runs = sre_compile.compile(sre_parse.SubPattern(state, [(C.MAX_REPEAT, (1, C.MAXREPEAT, item))]), flags)
    out = []
    for m in runs.finditer(_all_characters()):
        lo, hi = _code_point(m.start()), _code_point(m.end() - 1)
        if lo < _SURROGATES[0] <= hi:  # a run across the surrogates' gap
            out += [(lo, _SURROGATES[0] - 1), (_SURROGATES[1], hi)]
        else:
            out.append((lo, hi))
    return tuple(out)


class _NFA:
    """Thompson NFA over bytes: edges[s] = [(lo, hi, target)], eps[s] = [target]."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        self.edges: list[list[tuple[int, int, int]]] = []
        self.eps: list[list[int]] = []

    def state(self) -> int:
        if len(self.edges) >= MAX_NFA_STATES:
            raise SandboxError(f"regex {self.pattern!r} is too large: its automaton exceeds {MAX_NFA_STATES} states "
                               "(large {m,n} repetition counts multiply it)")
        self.edges.append([])
        self.eps.append([])
        return len(self.edges) - 1

    def chars(self, ranges) -> tuple[int, int]:
        start, end = self.state(), self.state()
        for lo, hi in ranges:
            for seq in byte_sequences(lo, hi):
                s = start
                for k, (a, b) in enumerate(seq):
                    t = end if k == len(seq) - 1 else self.state()
                    self.edges[s].append((a, b, t))
                    s = t
        return start, end

    def sequence(self, items, flags: int) -> tuple[int, int]:
        """NFA fragment (start, end) of a sequence of parse-tree items under the active flags."""
        start = end = self.state()
        for op, av in items:
            a, b = self.build(op, av, flags)
            self.eps[end].append(a)
            end = b
        return start, end

    def build(self, op, av, flags: int) -> tuple[int, int]:
        """NFA fragment (start, end) of one parse-tree item."""
        if op in _REFUSED:
            raise SandboxError(f"regex {self.pattern!r} uses {_REFUSED[op]}: not supported ({_SUPPORTED})")
        if op in (C.LITERAL, C.NOT_LITERAL, C.IN, C.ANY):
            return self.chars(_char_ranges((op, av), flags & ~C.SRE_FLAG_DEBUG))
        if op is C.SUBPATTERN:
            _, add, remove, items = av
            return self.sequence(items, (flags | add) & ~remove)
        if op is C.BRANCH:
            start, end = self.state(), self.state()
            for items in av[1]:
                a, b = self.sequence(items, flags)
                self.eps[start].append(a)
                self.eps[b].append(end)
            return start, end
        if op in (C.MAX_REPEAT, C.MIN_REPEAT):  # lazy or greedy: the same language
            low, high, items = av
            return self.repeat(items, low, None if high == C.MAXREPEAT else high, flags)
        raise SandboxError(f"regex {self.pattern!r}: construct {op} is not supported ({_SUPPORTED})")

    def repeat(self, items, low: int, high: int | None, flags: int) -> tuple[int, int]:
        """items{low,high}: low copies, then a loop (high None) or high - low optional copies."""
        start = end = self.state()
        for _ in range(low):
            a, b = self.sequence(items, flags)
            self.eps[end].append(a)
            end = b
        if high is None:
            a, b = self.sequence(items, flags)
            self.eps[end].append(a)
            self.eps[b].append(a)
            out = self.state()
            self.eps[end].append(out)
            self.eps[b].append(out)
            return start, out
        out = self.state()
        for _ in range(high - low):
            self.eps[end].append(out)
            a, b = self.sequence(items, flags)
            self.eps[end].append(a)
            end = b
        self.eps[end].append(out)
        return start, out

    def closure(self, states) -> frozenset:
        seen, stack = set(states), list(states)
        while stack:
            for t in self.eps[stack.pop()]:
                if t not in seen:
                    seen.add(t)
                    stack.append(t)
        return frozenset(seen)


def _byte_classes(nfa: _NFA) -> np.ndarray:
    """class_256[b]: bytes between consecutive edge boundaries are indistinguishable to every edge."""
    cuts = np.zeros(257, bool)
    for edges in nfa.edges:
        for lo, hi, _ in edges:
            cuts[lo] = cuts[hi + 1] = True
    cuts[0] = False
    return np.cumsum(cuts[:256]).astype(np.int32)


def _determinize(nfa: _NFA, start: int, end: int, class_256: np.ndarray):
    """Subset construction: (next_SxC with -1 for the empty set, accept_S); state 0 is initial."""
    reps = [int(np.argmax(class_256 == c)) for c in range(int(class_256.max()) + 1)]
    first = nfa.closure([start])
    ids, todo, rows, accept = {first: 0}, [first], [], []
    while todo:
        current = todo.pop(0)
        accept.append(end in current)
        row = []
        for b in reps:
            moved = [t for s in current for lo, hi, t in nfa.edges[s] if lo <= b <= hi]
            if not moved:
                row.append(-1)
                continue
            target = nfa.closure(moved)
            if target not in ids:
                if len(ids) >= MAX_DFA_STATES:
                    raise SandboxError(
                        f"regex {nfa.pattern!r} is too large: its automaton needs more than {MAX_DFA_STATES:,} "
                        f"states (a table of over {MAX_DFA_STATES * 256 * 4 / 2**20:.0f} MiB, and its token index "
                        "grows with the vocabulary); a repetition like (a|b)*a(a|b){n} doubles it with each n")
                ids[target] = len(ids)
                todo.append(target)
            row.append(ids[target])
        rows.append(row)
    return np.asarray(rows, np.int64).reshape(len(rows), len(reps)), np.asarray(accept, bool)


def _minimize(next_SxC: np.ndarray, accept_S: np.ndarray):
    """Moore's refinement on the completed DFA (a sink added for -1), then trimming of dead states."""
    n = len(accept_S)
    full_SxC = np.where(next_SxC < 0, n, next_SxC)
    full_SxC = np.vstack([full_SxC, np.full((1, full_SxC.shape[1]), n)])
    block_S = np.append(accept_S, False).astype(np.int64)
    while True:
        signature = np.ascontiguousarray(np.hstack([block_S[:, None], block_S[full_SxC]]))
        rows = signature.view(np.dtype((np.void, signature.itemsize * signature.shape[1])))[:, 0]
        _, refined_S = np.unique(rows, return_inverse=True)  # one sort of whole rows as byte strings
        refined_S = refined_S.reshape(-1)
        if refined_S.max() == block_S.max():
            break
        block_S = refined_S
    # blocks -> states, keeping the initial block first; drop blocks that cannot reach acceptance
    num_blocks = int(block_S.max()) + 1
    small_BxC = np.zeros((num_blocks, full_SxC.shape[1]), np.int64)
    small_BxC[block_S] = block_S[full_SxC]
    acc_B = np.zeros(num_blocks, bool)
    acc_B[block_S] = np.append(accept_S, False)
    live_B = acc_B.copy()
    while True:
        grown = live_B | live_B[small_BxC].any(axis=1)
        if (grown == live_B).all():
            break
        live_B = grown
    order = [int(block_S[0])] + [b for b in range(num_blocks) if live_B[b] and b != block_S[0]]
    if not live_B[block_S[0]]:
        return None, None
    new_id = np.full(num_blocks, -1, np.int64)
    new_id[order] = np.arange(len(order))
    return new_id[small_BxC[order]].astype(np.int32), acc_B[order]


def compile_regex(pattern: str) -> ByteDFA:
    """The trimmed minimal DFA over bytes of `pattern` (whole-string match); SandboxError if the
    pattern is unsupported or its language is empty."""
    parsed = parse(pattern)
    nfa = _NFA(pattern)
    start, end = nfa.sequence(list(parsed), parsed.state.flags)
    class_256 = _byte_classes(nfa)
    next_SxC, accept_S = _minimize(*_determinize(nfa, start, end, class_256))
    if next_SxC is None:
        raise SandboxError(f"regex {pattern!r} matches no string at all (its language is empty)")
    return ByteDFA(pattern, next_SxC[:, class_256], accept_S)
