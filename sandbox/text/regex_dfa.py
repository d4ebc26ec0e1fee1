"""Regular expression -> minimal deterministic automaton over bytes.

`interegular` parses the pattern (Python's syntax: literals, classes, escapes \\d \\w \\s (ASCII),
`. * + ? {m,n} | ( )`, flags (?i) and (?s); anchors are implicit: the whole string must match).
The rest is the sandbox's own:
1. Thompson's construction: each AST node becomes an NFA fragment with one start and one end,
   joined by epsilon moves; a character class becomes UTF-8 byte-range paths (`utf8_ranges`).
2. Subset construction over byte classes: bytes that every edge treats alike form one class,
   and a DFA state is the epsilon-closed set of NFA states reachable by a byte string.
3. Moore's partition refinement: start from {accepting, rejecting} and split blocks whose
   states step to different blocks on some class, until stable: the minimal DFA (Myhill-Nerode).
4. Trimming: states from which no accepting state is reachable are removed (transitions to
   them become -1), so "the DFA has a transition" means "the text is still a prefix of a match".
"""

import dataclasses

import numpy as np

from sandbox.errors import SandboxError
from sandbox.text.utf8_ranges import byte_sequences, char_ranges

MAX_NFA_STATES = 200_000


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
    """The interegular AST of `pattern`; SandboxError naming what is unsupported or malformed."""
    from interegular.patterns import InvalidSyntax, Unsupported, parse_pattern

    if not isinstance(pattern, str):
        raise SandboxError(f"a regex pattern must be a string, got {type(pattern).__name__}")
    try:
        return parse_pattern(pattern)
    except Unsupported as e:
        raise SandboxError(f"regex {pattern!r} uses an unsupported feature ({e}); supported: literals, classes, "
                           ". * + ? {m,n} | ( ), (?i) (?s); not: backreferences, lookaround, anchors ^ $ \\b, "
                           "\\u escapes (write the character itself)") from None
    except (InvalidSyntax, ValueError, IndexError) as e:
        raise SandboxError(f"regex {pattern!r} is not valid syntax: {str(e) or 'parse error'}") from None


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

    def build(self, node, flags) -> tuple[int, int]:
        """NFA fragment (start, end) of an interegular AST node under the active flags."""
        from interegular import patterns as P

        if isinstance(node, P.Pattern):
            flags = P._combine_flags(flags, node.added_flags, node.removed_flags)
            if flags & P.REFlags.MULTILINE:
                raise SandboxError(f"regex {self.pattern!r}: the (?m) flag is not supported (anchors are implicit)")
            start, end = self.state(), self.state()
            for option in node.options:
                a, b = self.build(option, flags)
                self.eps[start].append(a)
                self.eps[b].append(end)
            return start, end
        if isinstance(node, P._Concatenation):
            start = end = self.state()
            for part in node.parts:
                if isinstance(part, P._NonCapturing):
                    raise SandboxError(f"regex {self.pattern!r} uses lookaround (lookahead/lookbehind): not supported")
                a, b = self.build(part, flags)
                self.eps[end].append(a)
                end = b
            return start, end
        if isinstance(node, P._CharGroup):
            chars = set(node.chars)
            if flags & P.REFlags.CASE_INSENSITIVE:
                chars |= {c.lower() for c in chars} | {c.upper() for c in chars if len(c.upper()) == 1}
            return self.chars(char_ranges(chars, node.negated))
        if node == P._DOT:
            dotall = bool(flags & P.REFlags.SINGLE_LINE)
            return self.chars(char_ranges(set() if dotall else {"\n"}, negated=True))
        if node == P._EMPTY:
            s = self.state()
            return s, s
        if isinstance(node, P._Repeated):
            return self.repeat(node, flags)
        raise SandboxError(f"regex {self.pattern!r}: construct {type(node).__name__} is not supported")

    def repeat(self, node, flags) -> tuple[int, int]:
        """base{min,max}: min copies, then a loop (max None) or max - min optional copies."""
        if node.max is not None and node.max < node.min:
            raise SandboxError(f"regex {self.pattern!r}: repetition {{{node.min},{node.max}}} has max < min")
        start = end = self.state()
        for _ in range(node.min):
            a, b = self.build(node.base, flags)
            self.eps[end].append(a)
            end = b
        if node.max is None:
            a, b = self.build(node.base, flags)
            self.eps[end].append(a)
            self.eps[b].append(a)
            out = self.state()
            self.eps[end].append(out)
            self.eps[b].append(out)
            return start, out
        out = self.state()
        for _ in range(node.max - node.min):
            self.eps[end].append(out)
            a, b = self.build(node.base, flags)
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
    from interegular.patterns import REFlags

    nfa = _NFA(pattern)
    start, end = nfa.build(parse(pattern), REFlags(0))
    class_256 = _byte_classes(nfa)
    next_SxC, accept_S = _minimize(*_determinize(nfa, start, end, class_256))
    if next_SxC is None:
        raise SandboxError(f"regex {pattern!r} matches no string at all (its language is empty)")
    return ByteDFA(pattern, next_SxC[:, class_256], accept_S)
