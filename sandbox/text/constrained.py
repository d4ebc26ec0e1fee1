"""Token index of a regex: which tokens may come next, for every state of the byte automaton.

    index = regex_index(pattern, tokenizer)
    state = index.initial
    mask_V = index.allowed(state); state = index.advance(state, token_id); index.is_final(state)

For a DFA state s (the text so far, up to equivalence) and a token t with bytes b_1..b_n, the
token leads to delta(s, b_1..b_n), computed for all states and tokens at once by walking the
padded byte matrix of the vocabulary through the transition table (S x V x max-token-length
lookups, vectorized). Token t is allowed in s iff that state exists (the text stays a prefix of
some string of the language, see `regex_dfa`) and acceptance is still reachable from it by tokens
of this vocabulary (always, when every byte is a token, as in byte-level BPE). The end-of-text
token is allowed exactly in accepting states. `steps_S[s]` is the fewest tokens that complete a
match from s (breadth-first over the token graph), so a sampler with r tokens left can keep only
moves whose completion fits in r - 1.
"""

import dataclasses

import numpy as np

from sandbox.errors import SandboxError
from sandbox.text.regex_dfa import ByteDFA, compile_regex
from sandbox.text.tokenizer import Tokenizer

UNREACHABLE = np.iinfo(np.int32).max // 2
MAX_INDEX_BYTES = 2**30  # the index's arrays: S x (trie nodes + 3 V) x 8 bytes and S^2 for the state graph


def index_bytes(num_states: int, tokens: list[bytes | None]) -> int:
    """An upper bound on the bytes `build_index` allocates (the trie has at most sum of token lengths nodes)."""
    trie = 1 + sum(len(t) for t in tokens if t)
    return num_states * (trie + 3 * len(tokens)) * 8 + num_states**2


@dataclasses.dataclass(frozen=True)
class TokenIndex:
    """next_SxV[s, t]: the state after token t in state s, -1 where t is not allowed;
    steps_S[s]: fewest tokens to complete a match from s (UNREACHABLE if none)."""

    dfa: ByteDFA
    next_SxV: np.ndarray
    steps_S: np.ndarray
    eot: int | None

    @property
    def initial(self) -> int:
        return self.dfa.initial

    @property
    def vocab_size(self) -> int:
        return self.next_SxV.shape[1]

    def allowed(self, state: int) -> np.ndarray:
        """mask_V: True for the tokens that keep the text completable (end-of-text iff accepting)."""
        return self.next_SxV[state] >= 0

    def advance(self, state: int, token_id: int) -> int:
        """The state after `token_id`; SandboxError if the token is not allowed there."""
        nxt = int(self.next_SxV[state, token_id])
        if nxt < 0:
            raise SandboxError(f"token {token_id} is not allowed in state {state} of regex {self.dfa.pattern!r}")
        return nxt

    def is_final(self, state: int) -> bool:
        """True iff the text read so far is a full match."""
        return bool(self.dfa.accept_S[state])

    def can_continue(self, state: int) -> bool:
        """True iff some ordinary token may follow (a full match may still grow)."""
        mask_V = self.allowed(state)
        if self.eot is not None:
            mask_V = mask_V.copy()
            mask_V[self.eot] = False
        return bool(mask_V.any())

    def finish_SxV(self) -> np.ndarray:
        """Tokens still needed after t in s: steps_S[next], 0 for end-of-text, UNREACHABLE if t is not allowed."""
        out = np.where(self.next_SxV >= 0, self.steps_S[np.maximum(self.next_SxV, 0)], UNREACHABLE)
        if self.eot is not None:
            out[:, self.eot] = np.where(self.dfa.accept_S, 0, UNREACHABLE)
        return out.astype(np.int32)


def walk_tokens(next_Sx256: np.ndarray, tokens: list[bytes | None]) -> np.ndarray:
    """next_SxV[s, t] = delta(s, bytes of t), -1 if the byte walk leaves the automaton or t has no bytes.

    Tokens share prefixes, so the walk runs over the trie of the vocabulary, one level (byte
    position) at a time: a trie node's state vector is its parent's, stepped by one byte, and
    the cost is S x (number of distinct prefixes) lookups instead of S x V x longest token."""
    num_states = next_Sx256.shape[0]
    sink = num_states  # an extra row absorbing every failed walk
    table = np.vstack([np.where(next_Sx256 < 0, sink, next_Sx256), np.full((1, 256), sink)])
    prefixes = sorted({t[:j] for t in tokens if t for j in range(1, len(t) + 1)}, key=len)
    node_of = {b"": 0} | {p: k + 1 for k, p in enumerate(prefixes)}
    parent_P = np.array([node_of[p[:-1]] for p in prefixes], np.int64)
    last_P = np.array([p[-1] for p in prefixes], np.int64)
    depth_P = np.array([len(p) for p in prefixes])
    states_NxS = np.empty((len(prefixes) + 1, num_states + 1), np.int64)
    states_NxS[0] = np.arange(num_states + 1)
    for depth in range(1, int(depth_P.max(initial=0)) + 1):  # parents sit one level up: already filled
        level = np.flatnonzero(depth_P == depth)
        states_NxS[level + 1] = table[states_NxS[parent_P[level]], last_P[level, None]]
    nodes_V = np.array([node_of[t] if t else -1 for t in tokens])
    out_SxV = states_NxS[np.maximum(nodes_V, 0)].T[:num_states]
    out_SxV = np.where((out_SxV == sink) | (nodes_V < 0)[None, :], -1, out_SxV)
    return out_SxV.astype(np.int32)


def completion_steps(next_SxV: np.ndarray, accept_S: np.ndarray) -> np.ndarray:
    """steps_S: fewest tokens from s to an accepting state, by breadth-first search backwards
    from the accepting states over the state graph (s -> s' when some token leads there)."""
    num_states = len(accept_S)
    rows, cols = np.nonzero(next_SxV >= 0)
    edge_SxS = np.zeros((num_states, num_states), bool)
    edge_SxS[rows, next_SxV[rows, cols]] = True
    steps_S = np.where(accept_S, 0, UNREACHABLE)
    frontier_S, k = accept_S.copy(), 0
    while frontier_S.any():
        k += 1
        reached_S = edge_SxS[:, frontier_S].any(axis=1) & (steps_S == UNREACHABLE)
        steps_S[reached_S] = k
        frontier_S = reached_S
    return steps_S


def build_index(dfa: ByteDFA, tokens: list[bytes | None], eot: int | None) -> TokenIndex:
    """The token index of `dfa` over a vocabulary spelled by `tokens` (see the module docstring)."""
    next_SxV = walk_tokens(dfa.next_Sx256, tokens)
    steps_S = completion_steps(next_SxV, dfa.accept_S)
    next_SxV = np.where((next_SxV >= 0) & (steps_S[np.maximum(next_SxV, 0)] < UNREACHABLE), next_SxV, -1)
    if eot is not None:
        next_SxV[:, eot] = np.where(dfa.accept_S, np.arange(dfa.num_states), -1)
    return TokenIndex(dfa, next_SxV.astype(np.int32), steps_S.astype(np.int32), eot)


def regex_index(pattern: str, tokenizer: Tokenizer) -> TokenIndex:
    """Compile `pattern` and index it for `tokenizer`; SandboxError if no token sequence spells a match."""
    dfa = compile_regex(pattern)
    tokens = tokenizer.token_bytes()
    need = index_bytes(dfa.num_states, tokens)
    if need > MAX_INDEX_BYTES:
        raise SandboxError(f"regex {pattern!r} is too large for this tokenizer: its index of {dfa.num_states:,} "
                           f"states x {len(tokens):,} tokens needs about {need / 2**30:.1f} GiB (at most "
                           f"{MAX_INDEX_BYTES / 2**30:.0f} GiB); simplify the pattern")
    index = build_index(dfa, tokens, tokenizer.eot_id)
    if index.steps_S[index.initial] >= UNREACHABLE:
        raise SandboxError(f"no sequence of this tokenizer's {len(tokens)} tokens spells a string that matches "
                           f"regex {pattern!r}: the tokenizer cannot complete it")
    return index
