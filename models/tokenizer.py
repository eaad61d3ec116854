"""A word-level tokenizer for Chain-of-Causation texts, saved as JSON beside the weights.

Words and punctuation marks are tokens; a mark or word written without a space before it is
stored with a "##" prefix, so `decode(encode(text)) == text` for any text whose words are
separated by single spaces and whose tokens are all in the vocabulary (unknown ones become
"<unk>").
"""

import json
import re
from collections import Counter
from pathlib import Path

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
GLUE = "##"
_PIECE = re.compile(r"\w+|[^\w\s]")


def pieces(text: str) -> list[str]:
    """Text -> its word pieces, glued ones (no space before) prefixed with "##"."""
    out, end = [], None
    for m in _PIECE.finditer(text):
        out.append(m.group() if end is None or m.start() > end else GLUE + m.group())
        end = m.end()
    return out


class Tokenizer:
    def __init__(self, tokens: list[str]):
        if tuple(tokens[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary starts with {SPECIALS}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(len(SPECIALS))

    @classmethod
    def fit(cls, texts: list[str]) -> "Tokenizer":
        """A vocabulary of every piece of `texts`, most frequent first (ties alphabetically)."""
        counts = Counter(p for text in texts for p in pieces(text))
        return cls(list(SPECIALS) + sorted(counts, key=lambda p: (-counts[p], p)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Text -> ids, without <bos>/<eos>."""
        return [self.index.get(p, self.unk_id) for p in pieces(text)]

    def decode(self, ids) -> str:
        """Ids -> text, stopping at <eos> and skipping <pad>/<bos>."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            token = self.tokens[i]
            if token.startswith(GLUE) and out:
                out[-1] += token[len(GLUE):]
            else:
                out.append(token.removeprefix(GLUE))
        return " ".join(out)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"kind": "coclabel-word-tokenizer", "version": 1, "tokens": self.tokens}, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        data = json.loads(Path(path).read_text())
        if data.get("kind") != "coclabel-word-tokenizer":
            raise ValueError(f"{path} is not a coclabel tokenizer")
        return cls(data["tokens"])
