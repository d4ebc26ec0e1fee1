"""A large, varied, reproducible corpus for checking a tokenizer against a reference library.

`corpus()` is a list of texts: the embedded corpus (every pydoc topic), code (a fixed list of
standard-library modules, generated JSON and C-like code), every code point Unicode 14 assigns
(shuffled among ASCII letters, digits and spaces), words in many scripts, numbers in many forms,
whitespace runs, emoji sequences, chat transcripts with special tokens, and random strings over
a tricky alphabet. `samples()` is a short, diverse subset, small enough for a committed fixture.
Everything is seeded; the standard library and `unicodedata` are Python 3.11's (the fixture
records the corpus's own SHA-256, so a change shows as such, not as a tokenizer mismatch).
"""

import inspect
import json
import random
import unicodedata

from sandbox.text.corpus import load_text

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<file_sep>", "<jupyter_code>"]
STDLIB = ["argparse", "ast", "dataclasses", "difflib", "inspect", "json.decoder", "textwrap", "typing"]
SCRIPTS = {  # (first, last) code point of a block: words are drawn from it
    "latin": (0x00C0, 0x024F), "greek": (0x0391, 0x03C9), "cyrillic": (0x0410, 0x044F),
    "armenian": (0x0531, 0x0556), "hebrew": (0x05D0, 0x05EA), "arabic": (0x0621, 0x064A),
    "devanagari": (0x0905, 0x0939), "bengali": (0x0985, 0x09B9), "thai": (0x0E01, 0x0E2E),
    "georgian": (0x10D0, 0x10FA), "hangul": (0xAC00, 0xD7A3), "hiragana": (0x3041, 0x3096),
    "katakana": (0x30A1, 0x30FA), "cjk": (0x4E00, 0x9FFF), "math": (0x1D400, 0x1D7FF),
}
HAND_WRITTEN = [
    "Hello, world! It's 3.14159 and 1,000,000 people said 'hi'.",
    "The year 2024-01-01T12:34:56Z; call +1 (555) 010-9999 or 0xFF 0b1010 1e-9.",
    "a  1\tb\t\t22\n\n333 \n  4444",
    "   leading spaces, trailing spaces   ",
    "\n\n\n\r\n\r\n\t \u00a0\u3000\u2009\u200b end",
    "数字１２３ and Arabic-Indic ١٢٣ and superscripts x²³ and ½ ¾ and Ⅻ",
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️ 🤷‍♀️ 🧑🏿‍💻",
    "Ünïcödé façade naïve coöperate Æsir Øre straße ǅ ǈ",
    "日本語のテキストと한국어 텍스트와 中文文本。",
    "Привет, мир! Γειά σου Κόσμε! שלום עולם! مرحبا بالعالم!",
    "हिन्दी পাঠ ไทย ქართული Հայերեն",
    "def f(x):\n    return x ** 2  # square\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
    "<|im_start|><|im_end|><|endoftext|>",
    "partial <|im_sta and <|im_end| and im_start|> and <|endoftext",
    "word<|endoftext|>word 12<|im_end|>34",
    "<repo_name>sandbox<file_sep>README.md\n<jupyter_code>print(1)",
    "I'm you're we've they'll she'd it's IT'S Don'T",
    "controls \x00\x01\x04\x06\x13\x14\x16\x1d\x1f\x7f and planes \U00040000\U000B0000",
    "\U0001F600" * 30 + " " + "a" * 300 + " " + "1" * 50 + " " + "!" * 100,
    " " * 50 + "x" + "\n" * 30 + "y" + "\t" * 20,
    "ZWJ\u200dZWNJ\u200cVS16\ufe0fcombining e\u0301 a\u0308 \u0915\u094d\u0937",
    "",
]


def corpus() -> list[str]:
    """Every text of the large corpus, in a fixed order."""
    rng = random.Random(0)
    return (
        [load_text("pydoc")]
        + _code(rng)
        + _every_code_point(rng)
        + [_words(rng, script, 3000) for script in SCRIPTS]
        + [_numbers(rng) for _ in range(200)]
        + [_whitespace(rng) for _ in range(300)]
        + [_emoji(rng) for _ in range(100)]
        + [_chat(rng) for _ in range(200)]
        + [_random_string(rng, rng.randint(1, 400)) for _ in range(3000)]
        + HAND_WRITTEN
    )


def samples(texts: list[str], n: int = 200) -> list[str]:
    """The hand-written texts, then seeded slices of at most 160 characters of the corpus."""
    rng = random.Random(1)
    out = list(HAND_WRITTEN)
    while len(out) < n:
        text = rng.choice(texts)
        start = rng.randrange(max(len(text) - 20, 1))
        out.append(text[start : start + rng.randint(1, 160)])
    return out


def _code(rng: random.Random) -> list[str]:
    modules = [inspect.getsource(__import__(name, fromlist=["x"])) for name in STDLIB]
    data = [{"id": i, "name": _random_string(rng, 8), "tags": [rng.random() for _ in range(3)]} for i in range(300)]
    c_like = [
        f"static int f{i}(const char *s, size_t n) {{\n\tfor (size_t k = 0; k < n; ++k) "
        f"if (s[k] == '{chr(97 + i % 26)}') return (int)k * {i};\n\treturn -1;\n}}\n"
        for i in range(200)
    ]
    return modules + [json.dumps(data, indent=2), json.dumps(data), "".join(c_like)]


def _every_code_point(rng: random.Random) -> list[str]:
    """Every code point Unicode 14 assigns outside the private-use planes, shuffled, each
    followed now and then by an ASCII letter, digit, space or apostrophe; in texts of 2,000."""
    points = [c for c in range(0x10000 * 15) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    rng.shuffle(points)
    glue = list("aZ09 '.\n") + ["  ", "'s "]
    chars = [chr(c) + (rng.choice(glue) if rng.random() < 0.3 else "") for c in points]
    return ["".join(chars[k : k + 2000]) for k in range(0, len(chars), 2000)]


def _words(rng: random.Random, script: str, n: int) -> str:
    first, last = SCRIPTS[script]
    words = ["".join(chr(rng.randint(first, last)) for _ in range(rng.randint(1, 9))) for _ in range(n)]
    return "".join(w + rng.choice([" ", " ", " ", ", ", ". ", "\n", str(rng.randint(0, 999))]) for w in words)


def _numbers(rng: random.Random) -> str:
    forms = [
        lambda: str(rng.randint(0, 10 ** rng.randint(1, 20))),
        lambda: f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 8)}f}",
        lambda: f"{rng.randint(0, 10**9):,}",
        lambda: f"{rng.random():e}",
        lambda: f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        lambda: hex(rng.randint(0, 2**32)),
        lambda: "".join(chr(0x0660 + rng.randint(0, 9)) for _ in range(rng.randint(1, 6))),  # Arabic-Indic
        lambda: "".join(chr(0xFF10 + rng.randint(0, 9)) for _ in range(rng.randint(1, 6))),  # full-width
        lambda: rng.choice(["½", "²", "Ⅻ", "⑦", "𝟘𝟙", "፲"]),
    ]
    seps = [" ", "  ", "", "\n", ", ", " + ", "x", "$", "%"]
    return "".join(rng.choice(forms)() + rng.choice(seps) for _ in range(rng.randint(5, 60)))


def _whitespace(rng: random.Random) -> str:
    spaces = [" ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2009", "\u000b", "\u000c", "\u0085", "\u2028"]
    words = ["a", "word", "7", "42", "!", "é", "日本", "'s", ""]
    return "".join(
        "".join(rng.choice(spaces) for _ in range(rng.randint(0, 20))) + rng.choice(words)
        for _ in range(rng.randint(1, 40))
    )


def _emoji(rng: random.Random) -> str:
    base = [chr(c) for c in [*range(0x1F600, 0x1F64F), *range(0x1F300, 0x1F320), *range(0x1F90C, 0x1F93A)]]
    mods = ["", "", "\U0001F3FB", "\U0001F3FF", "\ufe0f", "\u200d\u2640\ufe0f", "\u200d\U0001F4BB"]
    flags = ["\U0001F1EB\U0001F1F7", "\U0001F1EF\U0001F1F5", "\U0001F1FA\U0001F1F8"]
    parts = [rng.choice(base) + rng.choice(mods) if rng.random() < 0.9 else rng.choice(flags) for _ in range(60)]
    return "".join(p + rng.choice(["", "", " ", " ok ", "\n", "3"]) for p in parts)


def _chat(rng: random.Random) -> str:
    roles = ["system", "user", "assistant"]
    turns = [
        f"<|im_start|>{rng.choice(roles)}\n{_random_string(rng, rng.randint(0, 80))}<|im_end|>\n"
        for _ in range(rng.randint(1, 6))
    ]
    return "".join(turns) + rng.choice(["", "<|endoftext|>", rng.choice(SPECIAL) + "tail"])


_ALPHABET = list("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789 \t\n\r.,;:!?'\"-_()[]{}<>|/\\@#$%^&*+=~`") + [
    "'s", "'ll", "'T", "é", "ß", "ñ", "Ω", "д", "中", "文", "한", "ع", "א", "\u0301", "\u200d", "\u00a0",
    "\u3000", "１", "٣", "²", "😀", "👍🏽", "\U0001D7D9", "\x04", "\x1d", "\x7f", "<|im_start|>", "<|im_end|>", "<|",
]


def _random_string(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(n))
