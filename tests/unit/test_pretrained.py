"""Models by alias, id or path: token counts as the model's own tokenizer makes them."""

from __future__ import annotations

import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsentry.models.pretrained import load_tokenizer, token_counter
from flowsentry.text.sentences import PAPER_FEATURES, sentence

# Sentences as the pipeline writes them, and any other text (long ones past the
# model's 128-token limit included: a count is never truncated).
VALUES = st.floats(allow_nan=False, allow_infinity=False, width=32)
SENTENCES = st.builds(
    lambda values: sentence(
        dict(zip(PAPER_FEATURES, values, strict=True)), "paper", PAPER_FEATURES
    ),
    st.lists(VALUES, min_size=len(PAPER_FEATURES), max_size=len(PAPER_FEATURES)),
)
TEXTS = st.lists(st.one_of(SENTENCES, st.text(max_size=800)), min_size=1, max_size=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=TEXTS)
def test_tokenizer_json_counts_equal_the_transformers_tokenizer(tiny_encoder, texts):
    counted = token_counter(str(tiny_encoder))(texts)
    expected = [len(ids) for ids in load_tokenizer(str(tiny_encoder))(texts)["input_ids"]]
    assert counted == expected


def test_without_tokenizer_json_transformers_counts(tiny_encoder, tmp_path):
    folder = tmp_path / "vocab-only"  # a tokenizer transformers builds from vocab.txt
    shutil.copytree(tiny_encoder, folder)
    (folder / "tokenizer.json").unlink()
    texts = ["wms_delay is 6.0 queue_delay is 22.0 " * 30, "", "héllo wörld"]
    counts = token_counter(str(folder))(texts)
    assert counts == [len(ids) for ids in load_tokenizer(str(folder))(texts)["input_ids"]]
    assert counts[0] > 128 and counts[1] == 2  # never truncated; [CLS] [SEP] around nothing
