"""Module C: open-concept identification from calibrated summaries (reference-spec §6).

Per neuron, the calibrated points S_h^c are lower-cased and POS-tagged (a :class:`Tagger`,
Penn tags; each distinct sentence tagged once across all neurons and the token lists
concatenated in point order, where the authors tag the " "-joined text: the same tokens up to
tagger context at sentence joins). Then:

- adjectives (``rule_based_adj_filter``): tokens tagged JJ/JJR/JJS, plus VBN ("muffled",
  "distorted") unless ``include_vbn=False``. An occurrence is negated if "no" or "not" is
  among the previous 4 tokens; a word counts if at least one occurrence is not negated.
  The authors slice ``tags[i-4:i]``, which for i < 4 is empty (negation unchecked for the
  first 4 tokens) unless the text has fewer than 4 tokens; ``negation_slice="reference"``
  reproduces that, the default checks ``tags[max(0, i-4):i]``. Words are de-duplicated per
  neuron (first-occurrence order), the authors' dummy list is removed
  (:data:`AUTHORS_DUMMY_WORDS`, their "stop-word" rule; single quotes are stripped first, the
  authors strip them only before the LLM lookup) and an acoustic filter decides the rest (each distinct word once across all neurons). Verdicts:
  "kept", "dropped:negation", "dropped:dummy", "dropped:not-acoustic".
- nouns NN/NNS/NNP/NNPS and verbs VB/VBD/VBG/VBN/VBP/VBZ not in the stopword list, preps IN
  (no stopword filter) (``all_pos_filter``); de-duplicated by default (the figures' files),
  ``pos_lists="repeated"`` keeps repeats (``sentence_utils``).
- caption_len: the number of plain spaCy tokens of the joined text (hyphenated words count as
  their pieces, as with the authors' unmerged ``en_core_web_lg`` count).

Stopwords: spaCy's English ``STOP_WORDS`` (326 words) instead of NLTK's (179). spaCy's list
also contains content-ish words that NLTK's lacks, e.g. "back", "front", "side", "part",
"top", "bottom", "name", "call", "make", "made", "show", "give", "put", "see", "say", "used",
"using", "well", "full", "empty", "move", "take", "become", "keep", "serious", "various";
NLTK's has clitic pieces spaCy handles differently ("s", "t", "ll", "ve", "don", "ain" ...).
So noun / verb lists drop a few more words than the authors'. Pass ``stopwords=`` to change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from and_toolkit.interfaces import TaggedToken, Tagger

#: The authors' dummy-word list (``sentence_utils.remove_dummy``), verbatim (reference §6.2).
AUTHORS_DUMMY_WORDS: frozenset[str] = frozenset({
    "other", "most", "some", "any", "several", "many", "few", "all", "each", "every",
    "another", "both", "either", "neither", "such", "more", "less", "a few", "a lot", "much",
    "little", "none", "no one", "somebody", "someone", "something", "somewhere", "used",
    "audio", "best", "due", "recorded", "various", "video", "meant", "easy", "737-800",
    "personal", "external", "overall", "sound", "mobile", "designed", "well-defined",
    "detailed", "suitable", "small", "third", "second", "fourth", "fifth", "first", "related",
    "different", "actual", "kitchen", "*", "2-3", "everyday", "common"})

#: "Basic adjectives" as the paper names them (Sec. 4.4); all other adjectives are high-level.
BASIC_ADJECTIVES_PAPER: frozenset[str] = frozenset({"high-pitched", "high-quality", "clear", "loud"})
#: The set the authors' code uses (reference §6.6): 'high' stands in for 'high-quality' (so the
#: hyphenated 'high-quality' counts as high-level), plus the harmless string 'random'.
BASIC_ADJECTIVES_CODE: frozenset[str] = frozenset({"clear", "high-pitched", "high", "loud", "random"})

#: Offline acoustic-adjective lexicon for :func:`lexicon_is_acoustic`: words that can describe
#: the tone, emotion or acoustic features of a sound (the LLM prompt's criterion), grouped as
#: loudness, pitch, timbre / texture, time structure, affect / music, source quality. It is a
#: hand-made approximation of the LLM filter, not the paper's; it includes the whole
#: vocabulary of :mod:`and_toolkit.dissect.descriptors`.
ACOUSTIC_ADJECTIVES: frozenset[str] = frozenset("""
loud quiet soft faint silent deafening booming thunderous blaring muted muffled hushed audible
inaudible powerful intense strong weak gentle heavy subtle
high-pitched low-pitched high low deep shrill squeaky squealing piercing sharp bass
bright dull clear crisp muddy harsh rough smooth mellow warm metallic hollow raspy hoarse
breathy nasal resonant rich thin full tinny screechy grating gritty buzzy fuzzy distorted
clean pure tonal noisy static staticky crackly scratchy grainy echoing echoey reverberant
ambient atmospheric distant muffled garbled fuzzy whispery
repetitive rhythmic rhythmical periodic regular irregular steady constant continuous
intermittent sporadic sudden abrupt brief short long sustained prolonged rapid fast slow quick
staccato pulsing pulsating consistent erratic fluctuating choppy chaotic monotonous monotone
melodic melodious harmonious harmonic musical dissonant discordant cacophonous calm soothing
peaceful relaxing tranquil serene dramatic tense eerie ominous cheerful joyful sad
melancholic aggressive energetic lively upbeat playful emotional expressive haunting
pleasant unpleasant annoying jarring startling alarming urgent frantic frightening scary
high-quality low-quality natural artificial synthetic electronic mechanical acoustic digital
vocal instrumental percussive rumbling crackling buzzing humming hissing whirring
""".split())

#: A hyphenated word ending in one of these is acoustic ("medium-pitched", "low-frequency").
ACOUSTIC_SUFFIXES: tuple[str, ...] = (
    "-pitched", "-pitch", "-frequency", "-volume", "-toned", "-tone", "-sounding", "-quality",
    "-tempo", "-intensity", "-amplitude")

_ADJ_TAGS = frozenset({"JJ", "JJR", "JJS"})
_NOUN_TAGS = frozenset({"NN", "NNS", "NNP", "NNPS"})
_VERB_TAGS = frozenset({"VB", "VBD", "VBG", "VBN", "VBP", "VBZ"})

Verdict = Literal["kept", "dropped:negation", "dropped:dummy", "dropped:not-acoustic"]


def lexicon_is_acoustic(word: str) -> bool:
    """Offline acoustic-adjective rule: in :data:`ACOUSTIC_ADJECTIVES` or an acoustic compound.

    A hyphenated word is acoustic if it is listed, ends in one of :data:`ACOUSTIC_SUFFIXES`,
    or its last part is listed ("ear-piercing").

    Args:
        word: one adjective (case-insensitive).

    Returns:
        Whether it describes an acoustic property.
    """
    w = word.lower().strip()
    if w in ACOUSTIC_ADJECTIVES or w.endswith(ACOUSTIC_SUFFIXES):
        return True
    return "-" in w and w.rsplit("-", 1)[1] in ACOUSTIC_ADJECTIVES


class OpenConceptsConfig(BaseModel):
    """Settings of Module C.

    Attributes:
        include_vbn: count VBN (past participles) as adjectives, as the authors.
        negation_words: a preceding one of these negates an adjective occurrence.
        negation_window: how many previous tokens are checked (authors: 4).
        negation_slice: "fixed" = ``tags[max(0, i-w):i]``; "reference" = the authors'
            ``tags[i-w:i]`` (negation unchecked for the first w tokens of longer texts).
        dummy_words: words removed as uninformative (authors' list).
        stopwords: noun / verb stopword list; None = spaCy's English ``STOP_WORDS``.
        pos_lists: "unique" (first-occurrence order) or "repeated" nouns / verbs / preps.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    include_vbn: bool = True
    negation_words: tuple[str, ...] = ("no", "not")
    negation_window: int = Field(default=4, ge=0)
    negation_slice: Literal["fixed", "reference"] = "fixed"
    dummy_words: frozenset[str] = AUTHORS_DUMMY_WORDS
    stopwords: frozenset[str] | None = None
    pos_lists: Literal["unique", "repeated"] = "unique"

    @classmethod
    def reference(cls) -> OpenConceptsConfig:
        """The authors' behaviour (negation slice quirk, POS lists with repeats)."""
        return cls(negation_slice="reference", pos_lists="repeated")


class OpenConcept(BaseModel):
    """One adjective candidate of a neuron and the filter's verdict.

    Attributes:
        concept: the word (lower-cased, single quotes stripped).
        pos: "ADJ".
        tag: Penn tag of its first occurrence ("JJ", "VBN" ...).
        verdict: "kept" or "dropped:<filter>".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    concept: str
    pos: str = "ADJ"
    tag: str
    verdict: Verdict


class OpenConcepts(BaseModel):
    """Module C output for one neuron.

    Attributes:
        concepts: every distinct adjective candidate with its verdict, first-occurrence order.
        nouns: nouns (stopwords removed), unique or repeated per config.
        verbs: verbs (stopwords removed).
        preps: tokens tagged IN.
        caption_len: plain spaCy token count of the joined points.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    concepts: tuple[OpenConcept, ...]
    nouns: tuple[str, ...]
    verbs: tuple[str, ...]
    preps: tuple[str, ...]
    caption_len: int

    @property
    def kept(self) -> tuple[str, ...]:
        """C_open-set: the kept adjectives."""
        return tuple(c.concept for c in self.concepts if c.verdict == "kept")

    @property
    def n_nouns(self) -> int:
        """Number of nouns."""
        return len(self.nouns)

    @property
    def n_verbs(self) -> int:
        """Number of verbs."""
        return len(self.verbs)

    @property
    def n_preps(self) -> int:
        """Number of prepositions."""
        return len(self.preps)


def _negated(words: list[str], i: int, cfg: OpenConceptsConfig) -> bool:
    w = cfg.negation_window
    if w == 0:
        return False
    window = words[i - w:i] if cfg.negation_slice == "reference" else words[max(0, i - w):i]
    return any(x in cfg.negation_words for x in window)


def _candidates(
    toks: list[TaggedToken], cfg: OpenConceptsConfig,
) -> list[tuple[str, str, Verdict | None]]:
    """Distinct adjective candidates: (word, first tag, 'dropped:negation' | 'dropped:dummy' | None)."""
    adj_tags = _ADJ_TAGS | {"VBN"} if cfg.include_vbn else _ADJ_TAGS
    words = [t.text for t in toks]
    first_tag: dict[str, str] = {}
    free: set[str] = set()
    for i, t in enumerate(toks):
        if t.tag not in adj_tags:
            continue
        w = t.text.strip("'")
        if not w:
            continue
        first_tag.setdefault(w, t.tag)
        if not _negated(words, i, cfg):
            free.add(w)
    out: list[tuple[str, str, Verdict | None]] = []
    for w, tag in first_tag.items():
        verdict: Verdict | None = None
        if w not in free:
            verdict = "dropped:negation"
        elif w in cfg.dummy_words:
            verdict = "dropped:dummy"
        out.append((w, tag, verdict))
    return out


def _pos_lists(
    toks: list[TaggedToken], stop: frozenset[str], unique: bool,
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    nouns = [t.text for t in toks if t.tag in _NOUN_TAGS and t.text not in stop]
    verbs = [t.text for t in toks if t.tag in _VERB_TAGS and t.text not in stop]
    preps = [t.text for t in toks if t.tag == "IN"]
    if unique:
        return tuple(dict.fromkeys(nouns)), tuple(dict.fromkeys(verbs)), tuple(dict.fromkeys(preps))
    return tuple(nouns), tuple(verbs), tuple(preps)


def open_concepts_many(
    points: Sequence[Sequence[str]],
    tagger: Tagger,
    is_acoustic: Callable[[str], bool] = lexicon_is_acoustic,
    cfg: OpenConceptsConfig | None = None,
    is_acoustic_many: Callable[[list[str]], list[bool]] | None = None,
) -> list[OpenConcepts]:
    """Module C for many neurons (see the module docstring).

    Args:
        points: per neuron, its calibrated high points S_h^c (may be empty).
        tagger: POS tagger (called once, with every distinct lower-cased point).
        is_acoustic: word -> acoustic? (default: the offline lexicon rule). Called once per
            distinct candidate word across all neurons.
        cfg: settings (default :class:`OpenConceptsConfig`).
        is_acoustic_many: optional batched form (list of distinct words -> list of bools),
            used instead of ``is_acoustic`` when given (e.g. one LLM batch).

    Returns:
        One :class:`OpenConcepts` per neuron, in input order.

    Raises:
        ValueError: if a neuron's points are a bare string, or ``is_acoustic_many`` returns
            the wrong number of answers.
    """
    cfg = cfg or OpenConceptsConfig()
    stop = cfg.stopwords
    if stop is None:
        from spacy.lang.en.stop_words import STOP_WORDS

        stop = frozenset(STOP_WORDS)
    lowered: list[list[str]] = []
    for n, pts in enumerate(points):
        if isinstance(pts, str):
            raise ValueError(f"points[{n}] must be a list of sentences, not a string")
        lowered.append([p.lower() for p in pts])
    distinct = list(dict.fromkeys(p for pts in lowered for p in pts))
    tagged = dict(zip(distinct, tagger.tag(distinct), strict=True)) if distinct else {}
    per_neuron = []
    for pts in lowered:
        toks = [t for p in pts for t in tagged[p]]
        per_neuron.append((toks, _candidates(toks, cfg)))
    to_decide = list(dict.fromkeys(
        w for _, cands in per_neuron for w, _, v in cands if v is None))
    if is_acoustic_many is not None:
        answers = list(is_acoustic_many(to_decide))
        if len(answers) != len(to_decide):
            raise ValueError(f"is_acoustic_many returned {len(answers)} answers for "
                             f"{len(to_decide)} words")
        decided = dict(zip(to_decide, map(bool, answers), strict=True))
    else:
        decided = {w: bool(is_acoustic(w)) for w in to_decide}
    out = []
    for toks, cands in per_neuron:
        concepts = []
        for w, tag, verdict in cands:
            if verdict is None:
                verdict = "kept" if decided[w] else "dropped:not-acoustic"
            concepts.append(OpenConcept(concept=w, tag=tag, verdict=verdict))
        nouns, verbs, preps = _pos_lists(toks, stop, cfg.pos_lists == "unique")
        out.append(OpenConcepts(
            concepts=tuple(concepts), nouns=nouns, verbs=verbs, preps=preps,
            caption_len=sum(t.n_pieces for t in toks)))
    return out
