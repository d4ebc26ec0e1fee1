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

UNREACHABLE = np.iinfo(np.int32).max // 2


def token_bytes(tokenizer) -> tuple[list[bytes | None], int | None]:
    """(bytes of every token id, None for special tokens; the end-of-text id or None)."""
    from sandbox.text.bpe import ENDOFTEXT, Tokenizer
    from sandbox.text.tokenizer import ByteTokenizer

    if isinstance(tokenizer, Tokenizer):
        return list(tokenizer.vocab) + [None] * len(tokenizer.special_tokens), tokenizer.special_tokens.get(ENDOFTEXT)
    if isinstance(tokenizer, ByteTokenizer):
        return [bytes([i]) for i in range(256)], None
    return [tokenizer.decode([i]).encode("utf-8") for i in range(tokenizer.vocab_size)], None


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
    """next_SxV[s, t] = delta(s, bytes of t), -1 if the byte walk leaves the automaton or t has no bytes."""
    num_states = next_Sx256.shape[0]
    length_V = np.array([len(t) if t else 0 for t in tokens])
    bytes_VxM = np.zeros((len(tokens), max(int(length_V.max()), 1)), np.int64)
    for v, t in enumerate(tokens):
        if t:
            bytes_VxM[v, : len(t)] = np.frombuffer(t, np.uint8)
    state_SxV = np.repeat(np.arange(num_states)[:, None], len(tokens), axis=1)
    state_SxV[:, length_V == 0] = -1
    for j in range(bytes_VxM.shape[1]):
        moving_SxV = (state_SxV >= 0) & (j < length_V)[None, :]
        stepped_SxV = next_Sx256[np.maximum(state_SxV, 0), bytes_VxM[None, :, j]]
        state_SxV = np.where(moving_SxV, stepped_SxV, state_SxV)
    return state_SxV.astype(np.int32)


def completion_steps(next_SxV: np.ndarray, accept_S: np.ndarray) -> np.ndarray:
    """steps_S: fewest tokens from s to an accepting state (Bellman-Ford on unit weights)."""
    steps_S = np.where(accept_S, 0, UNREACHABLE)
    valid_SxV = next_SxV >= 0
    while True:
        via_SxV = np.where(valid_SxV, steps_S[np.maximum(next_SxV, 0)] + 1, UNREACHABLE)
        better_S = np.minimum(steps_S, via_SxV.min(axis=1, initial=UNREACHABLE))
        if (better_S == steps_S).all():
            return steps_S
        steps_S = better_S


def build_index(dfa: ByteDFA, tokens: list[bytes | None], eot: int | None) -> TokenIndex:
    """The token index of `dfa` over a vocabulary spelled by `tokens` (see the module docstring)."""
    next_SxV = walk_tokens(dfa.next_Sx256, tokens)
    steps_S = completion_steps(next_SxV, dfa.accept_S)
    next_SxV = np.where((next_SxV >= 0) & (steps_S[np.maximum(next_SxV, 0)] < UNREACHABLE), next_SxV, -1)
    if eot is not None:
        next_SxV[:, eot] = np.where(dfa.accept_S, np.arange(dfa.num_states), -1)
    return TokenIndex(dfa, next_SxV.astype(np.int32), steps_S.astype(np.int32), eot)


def regex_index(pattern: str, tokenizer) -> TokenIndex:
    """Compile `pattern` and index it for `tokenizer`; SandboxError if no token sequence spells a match."""
    dfa = compile_regex(pattern)
    tokens, eot = token_bytes(tokenizer)
    index = build_index(dfa, tokens, eot)
    if index.steps_S[index.initial] >= UNREACHABLE:
        raise SandboxError(f"no sequence of this tokenizer's {len(tokens)} tokens spells a string that matches "
                           f"regex {pattern!r}: the tokenizer cannot complete it")
    return index
