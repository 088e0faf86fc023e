"""Builds tests/data/tokenizer/punct.model, a tiny SentencePiece BPE model whose vocabulary holds
ASCII and non-ASCII punctuation, control and user-defined pieces, and punct_expected.json: what
NeMo's detokenisation gives for it, computed with NeMo's own rules
(nemo/collections/asr/parts/utils/tokenizer_utils.py extract_punctuation_from_vocab, and
AbstractRNNTDecoding.decode_tokens_to_str_with_strip_punctuation: re `(\\s)(p1|p2|...)` -> `\\2`).

Run from the repository root with a Python that has sentencepiece (Debian: python3-sentencepiece):
    /usr/bin/python3 tools/reference/make_punct_tokenizer.py
"""
import io
import json
import re
import unicodedata

import sentencepiece as spm

OUT = "tests/data/tokenizer"

corpus = [
    "Hello, world! How are you?",
    "I'm fine, thanks. And you?",
    "¿Qué tal? ¡Muy bien!",
    "Wait... what?",
    "the cat sat on the mat.",
    "a dog, a cat, a bird; all here: yes!",
    "«quoted» text — dash",
    "state-of-the-art (really)",
    "price $5 + tax = total",
] * 20

model = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(corpus),
    model_writer=model,
    vocab_size=80,
    model_type="bpe",
    character_coverage=1.0,
    control_symbols=["<ctl>"],
    user_defined_symbols=["[noise]", "<|pnc|>"],
    normalization_rule_name="identity",
    shuffle_input_sentence=False,
    num_threads=1,
    hard_vocab_limit=False,
    minloglevel=2,
)
proto = model.getvalue()
sp = spm.SentencePieceProcessor(model_proto=proto)
vocab = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]

special = [re.compile(p) for p in (r"^\[.*\]$", r"^<.*>$", r"^##", r"^▁", r"^\s*$")]
punct = {
    c
    for token in vocab
    for c in token
    if unicodedata.category(c).startswith("P") and not any(p.match(token) for p in special)
}
pattern = re.compile(r"(\s)(" + "|".join(re.escape(p) for p in punct) + ")")


def nemo_text(ids):
    ids = [i for i in ids if i < len(vocab)]
    return pattern.sub(r"\2", sp.decode(ids))


pid = sp.piece_to_id
cases = [sp.encode(t) for t in corpus[:9]]
cases += [
    [pid("▁a"), pid("▁"), pid(","), pid("▁"), pid("▁"), pid("?"), pid("<ctl>"), pid("[noise]"),
     pid("▁"), pid(".")],
    [pid("<unk>"), pid("▁"), pid("."), len(vocab), len(vocab) + 3, pid("▁cat")],
    [pid("▁"), pid("¡"), pid("▁"), pid("«"), pid("»"), pid("▁"), pid("—")],
    [],
]
expected = {
    "vocab_size": len(vocab),
    "pieces": vocab,
    "punctuation": sorted(ord(c) for c in punct),
    "token_text": [sp.decode([i]) for i in range(len(vocab))],
    "control": [i for i in range(len(vocab)) if sp.is_control(i)],
    "cases": [{"ids": ids, "raw": sp.decode([i for i in ids if i < len(vocab)]),
               "text": nemo_text(ids)} for ids in cases],
}
with open(f"{OUT}/punct.model", "wb") as f:
    f.write(proto)
with open(f"{OUT}/punct_expected.json", "w", encoding="utf-8") as f:
    json.dump(expected, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(len(proto), "bytes;", len(vocab), "pieces; punctuation:", "".join(sorted(punct)))
