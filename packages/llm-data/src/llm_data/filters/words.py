"""English word splitting, token for token that of spaCy's English tokenizer, without spaCy.

datatrove's Gopher, C4 and FineWeb filters count words with ``spacy.blank("en")``'s tokenizer, so
agreeing with them means splitting exactly as it does: ``''`` (wikitext italics) is one token,
``Dr.`` and ``p.`` keep their period, a URL stays whole, ``and/or`` too, ``can't`` is ``ca`` +
``n't``. This module replays spaCy's algorithm (``spacy/tokenizer.pyx``) on its own rules, exported
to ``assets/spacy_en_tokenizer.json`` by ``tools/export_spacy_en_rules.py`` (MIT, ExplosionAI):

1. the text is cut at whitespace; a whitespace run other than one space is a token of its own;
2. each chunk: a special case is taken whole; otherwise prefixes and suffixes are peeled off one
   at a time (stopping at a special case), and what is left is kept whole when it is a special
   case or a URL, else split at its infixes;
3. a last pass over the document replaces runs of tokens that spell a special case containing
   punctuation (``'`` ``'`` -> ``''``, ``Dr`` ``.`` -> ``Dr.``) by that case, longest and leftmost
   first (a match across a space changes nothing but still claims its tokens, as in spaCy).

Step 2 is cached per chunk (a bounded dict); plain words and numbers skip it. Sentences are
counted as spaCy's ``sentencizer`` splits them (``count_sentences``), for the C4 rule.
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache, lru_cache
from importlib import resources

_SPACES = re.compile(r"(\s+)")
_CHUNKS = re.compile(r"\S+")
# A chunk's tokens after and before the last pass, and whether it may begin / end a match across
# chunks: (merged tokens, starts with an inner pattern token, ends with a leading one, tokens).
_Chunk = tuple[tuple[str, ...], bool, bool, tuple[str, ...]]
CACHE_LIMIT = 200_000  # cached chunks; cleared when full (each entry a few hundred bytes)


def _edge_chars(pattern: str, last: bool) -> frozenset[str] | None:
    """Every character a match of ``pattern`` can start (or end, ``last``) with, read off the
    parsed expression; None when the expression is too complex to tell (then nothing is skipped)."""
    from re import _parser

    return _edge_chars_of(list(_parser.parse(pattern)), last)


def _edge_chars_of(items, last: bool) -> frozenset[str] | None:
    chars: set[str] = set()

    def visit(items) -> bool:
        items = [i for i in items if str(i[0]) not in ("ASSERT", "ASSERT_NOT", "AT")]
        if not items:
            return False
        op, arg = items[-1] if last else items[0]
        op = str(op)
        if op == "LITERAL":
            chars.add(chr(arg))
        elif op == "IN" and all(str(o) in ("LITERAL", "RANGE") for o, _ in arg):
            for o, a in arg:
                chars.update([chr(a)] if str(o) == "LITERAL" else map(chr, range(a[0], a[1] + 1)))
        elif op == "BRANCH":
            return all(visit(alt) for alt in arg[1])
        elif op == "SUBPATTERN":
            return visit(arg[-1])
        elif op in ("MAX_REPEAT", "MIN_REPEAT") and arg[0] >= 1:
            return visit(arg[2])
        else:
            return False
        return True

    return frozenset(chars) if visit(list(items)) else None


def _single_character_affixes(pattern: str, last: bool) -> frozenset[str]:
    """Characters that are, wherever they begin (prefix) or end (suffix) a string, exactly a
    one-character affix of it, whatever else the string holds; read off the parsed expression
    (conservatively: a character any other alternative might concern is left out)."""
    from re import _parser

    tree = [item for item in _parser.parse(pattern) if str(item[0]) != "AT"]
    branches = tree[0][1][1] if len(tree) == 1 and str(tree[0][0]) == "BRANCH" else [tree]
    found: set[str] = set()
    if not last:  # a prefix: the first alternative that can begin with c must be c alone
        decided: set[str] = set()
        for branch in branches:
            chars = _edge_chars_of(branch, last)
            if chars is None:
                break
            body = [item for item in branch if str(item[0]) != "AT"]
            if len(body) == 1 and str(body[0][0]) in ("LITERAL", "IN"):
                found.update(chars - decided)
            decided |= chars
        return frozenset(found)
    # a suffix: every alternative that can end with c is one character wide, one of them bare
    widest: dict[str, int] = {}
    for branch in branches:
        chars = _edge_chars_of(branch, last)
        if chars is None:
            return frozenset()
        width = branch.getwidth()[1]
        body = [item for item in branch if str(item[0]) != "AT"]
        bare = len(body) == 1 and str(body[0][0]) in ("LITERAL", "IN")
        for c in chars:
            widest[c] = max(widest.get(c, 0), width)
            if bare and width == 1:
                found.add(c)
    return frozenset(c for c in found if widest[c] == 1)


def _char_class(chars: frozenset[str]) -> str:
    """A regular expression character class of ``chars``, as ranges."""
    codes, ranges = sorted(map(ord, chars)), []
    for code in codes:
        if ranges and code == ranges[-1][1] + 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return "[" + "".join(re.escape(chr(a)) + ("-" + re.escape(chr(b)) if b > a else "") for a, b in ranges) + "]"


@cache
def load_rules() -> dict:
    return json.loads(resources.files("llm_data").joinpath("assets/spacy_en_tokenizer.json").read_text("utf-8"))


class EnglishTokenizer:
    """spaCy's English tokenizer rebuilt from its exported rules (see the module docstring)."""

    def __init__(self, rules: dict):
        self._prefix = re.compile(rules["prefix"]).match  # every alternative is anchored at ^
        self._suffix = re.compile(rules["suffix"])
        self._infix = re.compile(rules["infix"]).finditer
        self._infix_at = re.compile(rules["infix"]).match
        self._url = re.compile(rules["url"]).match
        # Characters an affix can begin / end with: most chunks skip the expressions altogether.
        self._prefix_first = _edge_chars(rules["prefix"], last=False)
        self._suffix_last = _edge_chars(rules["suffix"], last=True)
        self._prefix_one = _single_character_affixes(rules["prefix"], last=False)
        self._suffix_one = _single_character_affixes(rules["suffix"], last=True)
        infix_first = _edge_chars(rules["infix"], last=False)
        # Where an infix can begin (a match consumes its first character from this set): the
        # expression is tried only there, which is what makes long markup chunks cheap.
        self._infix_starts = re.compile(_char_class(infix_first)).finditer if infix_first else None
        self.specials: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in rules["special_cases"].items()}
        self.punct_chars = frozenset(rules["sentence_punct_chars"])
        # The last pass looks for the special cases that affix rules would take apart, spelled as
        # the tokens those rules give (spaCy: with faster_heuristics, its default).
        self._patterns: set[tuple[str, ...]] = set()
        for text in self.specials:
            if self._prefix_len(text) or self._suffix_len(text) or self._has_infix(text) or " " in text:
                self._patterns.add(tuple(self._doc_tokens(text, specials=False)[0]))
        self._first_tokens = {p[0] for p in self._patterns}
        lengths: dict[str, set[int]] = {}
        for p in self._patterns:
            lengths.setdefault(p[0], set()).add(len(p))
        self._lengths_after = {token: sorted(n, reverse=True) for token, n in lengths.items()}
        # A match across chunks ends one chunk with a pattern's leading tokens and starts the next
        # with its inner tokens: documents where that can happen take the exact whole-text pass.
        self._leading_tokens = {t for p in self._patterns for t in p[:-1]}
        self._inner_tokens = {t for p in self._patterns for t in p[1:]}
        self._neighbours = {(p[j - 1], p[j]) for p in self._patterns for j in range(1, len(p))}
        if any(t.isspace() for p in self._patterns if len(p) > 1 for t in p):
            raise ValueError("a special case spans whitespace tokens: the per-chunk pass would miss it")
        self._cache: dict[str, _Chunk] = {}

    # -- affixes ------------------------------------------------------------------------------

    def _prefix_len(self, text: str) -> int:
        if not text or (self._prefix_first is not None and text[0] not in self._prefix_first):
            return 0
        match = self._prefix(text)
        return match.end() if match else 0

    def _suffix_len(self, text: str) -> int:
        if not text or (self._suffix_last is not None and text[-1] not in self._suffix_last):
            return 0
        # Suffixes end the string and are at most 5 characters, except a run of periods: search
        # only the tail unless the text ends in "..", which keeps the leftmost match spaCy finds.
        start = 0 if text.endswith("..") else max(0, len(text) - 5)
        match = self._suffix.search(text, start)
        return match.end() - match.start() if match else 0

    def _has_infix(self, text: str) -> bool:
        return bool(self._infix_matches(text))

    def _chunk(self, chunk: str) -> _Chunk:
        """One whitespace-free chunk: its tokens before and after the last pass (cached)."""
        found = self._cache.get(chunk)
        if found is None:
            if chunk in self.specials:
                first = self.specials[chunk]
            elif chunk.isalpha() or chunk.isdecimal():
                first = (chunk,)  # no rule splits a run of letters or of digits
            else:
                first = tuple(self._split(chunk, True))
            matches = [] if self._first_tokens.isdisjoint(first) else self._special_matches(first)
            merged = tuple(self._merge(first, {0}, matches)) if matches else first
            found = (merged, first[0] in self._inner_tokens, first[-1] in self._leading_tokens, first)
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            self._cache[chunk] = found
        return found

    def _split(self, string: str, specials: bool) -> list[str]:
        """spaCy's ``_split_affixes`` then ``_attach_tokens`` for one chunk (the affix tests are
        ``_prefix_len`` / ``_suffix_len`` written out: this loop runs for every new chunk)."""
        special = self.specials if specials else {}
        prefix_first, prefix_match, prefix_one = self._prefix_first, self._prefix, self._prefix_one
        suffix_last, suffix_search, suffix_one = self._suffix_last, self._suffix.search, self._suffix_one
        prefixes: list[str] = []
        suffixes: list[str] = []
        last_size = 0
        while string and len(string) != last_size:
            if string in special:
                break
            last_size = len(string)
            pre_len = 0
            if string[0] in prefix_one:
                pre_len = 1
            elif prefix_first is None or string[0] in prefix_first:
                match = prefix_match(string)
                pre_len = match.end() if match else 0
            if pre_len:
                prefix, minus_pre = string[:pre_len], string[pre_len:]
                if minus_pre and minus_pre in special:
                    prefixes.append(prefix)
                    string = minus_pre
                    break
            suf_len = 0
            rest = string[pre_len:] if pre_len else string
            if rest and rest[-1] in suffix_one:
                suf_len = 1
            elif rest and (suffix_last is None or rest[-1] in suffix_last):
                match = suffix_search(rest, 0 if rest.endswith("..") else max(0, len(rest) - 5))
                suf_len = match.end() - match.start() if match else 0
            if suf_len:
                suffix, minus_suf = string[-suf_len:], string[:-suf_len]
                if minus_suf and minus_suf in special:
                    suffixes.append(suffix)
                    string = minus_suf
                    break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                prefixes.append(prefix)
                suffixes.append(suffix)
                string = string[pre_len:-suf_len]
            elif pre_len:
                prefixes.append(prefix)
                string = minus_pre
            elif suf_len:
                suffixes.append(suffix)
                string = minus_suf
        tokens = prefixes
        if string:
            if string in special:
                tokens.extend(special[string])
            elif "." in string and self._url(string):  # a URL holds a period (host name or IPv4)
                tokens.append(string)
            else:
                tokens.extend(self._split_infixes(string))
        tokens.extend(reversed(suffixes))
        return tokens

    def _split_infixes(self, string: str) -> list[str]:
        tokens, start = [], 0
        for match in self._infix_matches(string):
            infix_start, infix_end = match.start(), match.end()
            if infix_start == 0:
                continue  # spaCy skips an infix at the very start
            if infix_start != start:
                tokens.append(string[start:infix_start])
            if infix_start != infix_end:
                tokens.append(string[infix_start:infix_end])
            start = infix_end
        if string[start:]:
            tokens.append(string[start:])
        return tokens

    def _infix_matches(self, string: str) -> list[re.Match]:
        """``finditer`` of the infix expression, tried only where an infix can begin."""
        if self._infix_starts is None:
            return list(self._infix(string))
        found, resume = [], 0
        for candidate in self._infix_starts(string):
            position = candidate.start()
            if position < resume:
                continue
            match = self._infix_at(string, position)  # lookbehinds still see the text before
            if match:
                found.append(match)
                resume = max(match.end(), position + 1)
        return found

    # -- documents ----------------------------------------------------------------------------

    def _doc_tokens(self, text: str, specials: bool = True) -> tuple[list[str], set[int]]:
        """Every token spaCy's Doc would hold, whitespace tokens included, before the last pass; and
        the positions where a new chunk (or whitespace token) starts."""
        pieces = _SPACES.split(text)  # chunk, whitespace, chunk, ... (first / last may be "")
        tokens: list[str] = []
        starts: set[int] = set()
        for k, piece in enumerate(pieces):
            if not piece:
                continue
            if k % 2 == 0:
                starts.add(len(tokens))
                tokens.extend(self._chunk(piece)[3] if specials else self._split(piece, False))
                continue
            if k == 1 and not pieces[0]:
                rest = piece  # leading whitespace is one token
            elif piece == " ":
                continue  # one space only separates
            else:
                rest = piece[1:] if piece[0] == " " else piece  # one space goes with the token before
            if rest:
                starts.add(len(tokens))
                tokens.append(rest)
        return tokens, starts

    def tokens(self, text: str) -> list[str]:
        """The tokens of ``spacy.blank("en")(text)``, whitespace tokens included."""
        tokens, starts = self._doc_tokens(text)
        matches = self._special_matches(tokens)
        return self._merge(tokens, starts, matches) if matches else tokens

    def _special_matches(self, tokens: list[str]) -> list[tuple[int, int]]:
        """Every (start, end) where the tokens spell a special case's pattern, overlaps included."""
        lengths_after, patterns = self._lengths_after, self._patterns
        found, count = [], len(tokens)
        for i, token in enumerate(tokens):
            lengths = lengths_after.get(token)
            if lengths:
                found.extend((i, i + n) for n in lengths if i + n <= count and tuple(tokens[i:i + n]) in patterns)
        return found

    def _merge(self, tokens: list[str], starts: set[int], matches: list[tuple[int, int]]) -> list[str]:
        """spaCy's ``_filter_special_spans`` and ``_retokenize_special_spans``."""
        matches.sort(key=lambda m: (m[0] - m[1], m[0]))  # longest first, then leftmost
        seen: set[int] = set()
        accepted = {}
        for start, end in matches:
            if start not in seen and end - 1 not in seen:
                accepted[start] = end
            seen.update(range(start, end))  # a rejected span still claims its tokens
        out, i = [], 0
        while i < len(tokens):
            end = accepted.get(i)
            if end is None:
                out.append(tokens[i])
                i += 1
                continue
            span = tokens[i:end]
            if any(j in starts for j in range(i + 1, end)):
                out.extend(span)  # a match across whitespace spells no special case: unchanged
            else:
                out.extend(self.specials.get("".join(span), span))
            i = end
        return out

    def words(self, text: str) -> list[str]:
        """datatrove's ``split_into_words``: the tokens, whitespace tokens left out.

        Chunk by chunk from the cache. Neighbouring chunks that may hold one special-case match
        between them (``'' ''``) and are joined by exactly one space go through the last pass
        together, as spaCy would see them."""
        chunk_of, get, neighbours = self._chunk, self._cache.get, self._neighbours
        chunks = text.split()
        words: list[str] = []
        extend = words.extend
        previous, mark = None, 0  # the chunk before, and where its words start
        group: list[str] | None = None  # first-pass tokens of the chunks joined so far
        group_mark, offsets = 0, None
        for k, chunk in enumerate(chunks):
            found = get(chunk) or chunk_of(chunk)
            if found[1] and previous is not None and previous[2] and (previous[3][-1], found[3][0]) in neighbours:
                if offsets is None:
                    offsets = [m.start() for m in _CHUNKS.finditer(text)]
                if text[offsets[k - 1] + len(chunks[k - 1]):offsets[k]] == " ":
                    if group is None:
                        group, group_mark, group_starts = list(previous[3]), mark, {0}
                    group_starts.add(len(group))
                    group.extend(found[3])
                    del words[group_mark:]
                    extend(self._merge(group, group_starts, self._special_matches(group)))
                    previous, mark = found, len(words)
                    continue
            group = None
            mark = len(words)
            extend(found[0])
            previous = found
        return words

    def count_sentences(self, text: str) -> int:
        """Sentences of spaCy's ``sentencizer`` (as datatrove's ``split_into_sentences`` counts them)."""
        tokens = self.tokens(text)
        count, seen_period = 0, False
        for token in tokens:
            in_punct_chars = token in self.punct_chars
            if seen_period and not in_punct_chars and not _is_punct(token):
                count += 1
                seen_period = False
            elif in_punct_chars:
                seen_period = True
        return count + 1 if tokens else 0


@lru_cache(maxsize=4096)
def _is_punct(token: str) -> bool:
    """spaCy's ``is_punct``: every character in a Unicode punctuation category."""
    return all(unicodedata.category(c).startswith("P") for c in token)


@cache
def english_tokenizer() -> EnglishTokenizer:
    return EnglishTokenizer(load_rules())
