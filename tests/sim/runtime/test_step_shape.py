"""The scheduler's batch key (a plain tuple of BatchShape's fields, the engine's memo key) and the Step's shape built from it
equal BatchShape(...) from the chunks, field for field."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sim.perf.batch import BatchShape
from sim.runtime.batching import Seq, Step, _shape


@settings(max_examples=60, deadline=None)
@given(chunks=st.lists(st.tuples(st.integers(0, 3000), st.integers(1, 600)), max_size=5),
       decodes=st.lists(st.tuples(st.integers(1, 4000), st.integers(0, 300)), max_size=5))
def test_shape_equals_the_constructor_field_for_field(chunks, decodes):
    seqs = []
    for prefilled, _ in chunks:
        s = Seq(len(seqs), 0, prefilled + 1000, 10, 0.0)
        s.prefilled = prefilled
        seqs.append(s)
    dec = []
    for prompt, generated in decodes:
        s = Seq(0, 0, prompt, generated + 1, 0.0)
        s.generated = generated
        dec.append(s)
    pairs = [(s, c) for s, (_, c) in zip(seqs, chunks)]
    want = BatchShape(prefill_tokens=sum(c for _, c in chunks),
                      prefill_attn_pairs=sum(c * (p + (c + 1) / 2) for p, c in chunks),
                      num_prefill_seqs=len(chunks), decode_seqs=len(decodes),
                      decode_ctx_tokens=sum(p + g for p, g in decodes))
    key = _shape(pairs, dec)
    assert type(key) is tuple and key == tuple(vars(want).values())  # the field order of the dataclass
    got = Step(tuple(pairs), tuple(dec), key).shape
    assert type(got) is BatchShape and got == want and hash(got) == hash(want)
    assert got.num_tokens == want.num_tokens and vars(got) == vars(want)
