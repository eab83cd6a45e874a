"""GPT-2's tokenizer, built offline, gives GPT-2's ids."""

from actpatch.tokenizer import gpt2_tokenizer


def test_known_gpt2_ids():
    tok = gpt2_tokenizer()
    # Reference ids from GPT-2's published vocabulary (encoder.json).
    assert tok(" France", add_special_tokens=False).input_ids == [4881]
    assert tok(" Mary", add_special_tokens=False).input_ids == [5335]
    assert tok("Berlin", add_special_tokens=False).input_ids == [24814, 2815]
    assert tok.bos_token_id == 50256 and len(tok) == 50257


def test_round_trip_keeps_spaces():
    tok = gpt2_tokenizer()
    text = "When Mary and John went to the store, John gave a drink to"
    assert tok.decode(tok(text).input_ids) == text
