"""TextEncoder: parity with transformers' CLIPTextModel through the converter (both pooling rules,
both activations), the causal mask, end-token pooling, shorter contexts, and input checks."""

import pytest
import torch
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from minildm.convert.hf_clip import (
    config_from_hf,
    convert_hf_clip_text_state_dict,
    text_encoder_from_hf,
)
from minildm.text import CLIPTokenizer, TextEncoder, TextEncoderConfig, train_bpe

TINY = TextEncoderConfig(vocab_size=64, context_length=12, width=32, num_layers=2, num_heads=4)


def _hf_model(hidden_act: str, eos_token_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=16,
        hidden_act=hidden_act,
        eos_token_id=eos_token_id,
        bos_token_id=98,
        pad_token_id=0,
    )
    return CLIPTextModel(config).eval()


def _tokens(end: int) -> torch.Tensor:
    """Start 98, text (ids 60..97), end token `end`, zero padding; row 2 holds an extra `end` early."""
    tokens = torch.zeros(3, 16, dtype=torch.long)
    for row, length in enumerate([14, 5, 9]):
        tokens[row, 0], tokens[row, length - 1] = 98, end
        tokens[row, 1 : length - 1] = torch.randint(60, 98, (length - 2,))
    tokens[2, 3] = end
    return tokens


@pytest.mark.parametrize("hidden_act, eos_token_id, end", [("quick_gelu", 2, 99), ("gelu", 50, 50)])
def test_matches_transformers_clip_text_model(hidden_act, eos_token_id, end):
    """Legacy eos_token_id=2: both pool at argmax(ids), so the end token must be the largest id;
    otherwise both pool at the first eos_token_id, here 50, which argmax would miss."""
    hf = _hf_model(hidden_act, eos_token_id)
    ours = text_encoder_from_hf(hf).eval()
    assert ours.config.eos_token_id == (None if eos_token_id == 2 else 50)
    assert ours.config.mlp_width == 80
    tokens = _tokens(end)
    assert ours.pool_positions(tokens).tolist() == [13, 4, 3]
    with torch.no_grad():
        expected = hf(input_ids=tokens)
        hidden, pooled = ours(tokens)
    torch.testing.assert_close(hidden, expected.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled, expected.pooler_output, atol=1e-5, rtol=0)
    assert tokens.argmax(dim=-1).tolist() == (
        [13, 4, 3] if end == 99 else [0, 0, 0]
    )  # with end 50, argmax finds the start token 98


def test_converter_rejects_a_wrong_state_dict():
    hf = _hf_model("quick_gelu", 2)
    state = hf.state_dict()
    assert set(convert_hf_clip_text_state_dict(state, 3)) == set(TextEncoder(config_from_hf(hf.config)).state_dict())
    with pytest.raises(ValueError, match="4 layers"):
        convert_hf_clip_text_state_dict(state, 4)


def test_causal_a_token_never_sees_later_tokens():
    encoder = TextEncoder(TINY).eval()
    tokens = torch.randint(0, 64, (2, 12))
    changed = tokens.clone()
    changed[:, 7:] = torch.randint(0, 64, (2, 5))
    with torch.no_grad():
        hidden, _ = encoder(tokens)
        hidden_changed, _ = encoder(changed)
    torch.testing.assert_close(hidden[:, :7], hidden_changed[:, :7], atol=0, rtol=0)
    assert not torch.allclose(hidden[:, 7:], hidden_changed[:, 7:])


def test_pooled_is_the_hidden_state_at_the_end_token_and_ignores_padding():
    tok = CLIPTokenizer.from_merges(train_bpe(["a red circle", "a blue square at the top"], 40))
    cfg = TextEncoderConfig(vocab_size=tok.vocab_size, context_length=16, width=32, num_layers=2, num_heads=4)
    encoder = TextEncoder(cfg).eval()
    tokens = tok(["a red circle", "a blue square at the top"], context_length=16)
    with torch.no_grad():
        hidden, pooled = encoder(tokens)
        ends = (tokens == tok.eot_token_id).int().argmax(dim=-1)
        short = int(ends.max()) + 1  # any context length <= 16 that still holds the end tokens
        short_hidden, short_pooled = encoder(tokens[:, :short])
    torch.testing.assert_close(pooled, hidden[torch.arange(2), ends])
    torch.testing.assert_close(short_pooled, pooled)  # padding after the end token changes nothing
    torch.testing.assert_close(short_hidden, hidden[:, :short])
    assert short < 16


def test_mean_pooling_averages_the_states_up_to_the_end_token():
    tok = CLIPTokenizer.from_merges(train_bpe(["a red circle", "a blue square at the top", "a red square"], 40))
    cfg = TextEncoderConfig(vocab_size=tok.vocab_size, context_length=16, width=32, num_layers=2, num_heads=4)
    eos, mean = TextEncoder(cfg).eval(), TextEncoder(TextEncoderConfig(**{**cfg.__dict__, "pool": "mean"})).eval()
    mean.load_state_dict(eos.state_dict())  # the pooling rule has no weights of its own
    tokens = tok(["a red circle", "a blue square at the top", "a red square"], context_length=16)
    ends = (tokens == tok.eot_token_id).int().argmax(dim=-1)
    with torch.no_grad():
        hidden, pooled_eos = eos(tokens)
        hidden_mean, pooled = mean(tokens)
        _, short_pooled = mean(tokens[:, : int(ends.max()) + 1])
    torch.testing.assert_close(hidden_mean, hidden, atol=0, rtol=0)  # only the pooled vector changes
    for row in range(3):  # numpy's mean of the rows 0..end, computed apart from the model
        expected = torch.from_numpy(hidden[row, : int(ends[row]) + 1].double().numpy().mean(axis=0)).float()
        torch.testing.assert_close(pooled[row], expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(short_pooled, pooled)  # padding after the end token changes nothing
    assert not torch.allclose(pooled, pooled_eos)
    with pytest.raises(ValueError, match="pool must be 'eos' or 'mean', got 'max'"):
        TextEncoderConfig(**{**cfg.__dict__, "pool": "max"})


def test_sdpa_path_and_gradients():
    cfg = TextEncoderConfig(vocab_size=64, context_length=12, width=32, num_layers=2, num_heads=4, activation="gelu")
    encoder = TextEncoder(cfg)
    fused = TextEncoder(TextEncoderConfig(**{**cfg.__dict__, "use_sdpa": True}))
    fused.load_state_dict(encoder.state_dict())
    tokens = torch.randint(0, 64, (3, 10))
    hidden, pooled = encoder(tokens)
    torch.testing.assert_close(fused(tokens)[0], hidden, atol=1e-5, rtol=1e-5)
    (hidden.square().mean() + pooled.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_bad_inputs_are_explained():
    encoder = TextEncoder(TINY)
    with pytest.raises(ValueError, match="at most context_length=12"):
        encoder(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="LongTensor"):
        encoder(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="activation"):
        TextEncoder(TextEncoderConfig(**{**TINY.__dict__, "activation": "relu"}))
    with pytest.raises(ValueError, match="divisible"):
        TextEncoder(TextEncoderConfig(**{**TINY.__dict__, "num_heads": 5}))
    with pytest.raises(ValueError, match="eos_token_id=7"):
        TextEncoder(TextEncoderConfig(**{**TINY.__dict__, "eos_token_id": 7}))(torch.zeros(1, 4, dtype=torch.long))


def test_an_mlp_width_that_is_no_round_ratio_loads_exactly():
    # 61 / 56 * 56 is 60.99999..., which a ratio floored to an int would turn into 60
    config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=56,
        intermediate_size=61,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=16,
        eos_token_id=2,
    )
    hf = CLIPTextModel(config).eval()
    ours = text_encoder_from_hf(hf).eval()
    assert ours.blocks[0].mlp.fc1.out_features == 61
    tokens = _tokens(99)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens)[0], hf(input_ids=tokens).last_hidden_state, atol=1e-5, rtol=0)


def test_text_projection_is_kept_and_matches_text_embeds():
    config = CLIPTextConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=16,
        projection_dim=24,
        eos_token_id=50,
    )
    hf = CLIPTextModelWithProjection(config).eval()
    ours = text_encoder_from_hf(hf).eval()
    assert ours.config.projection_dim == 24
    tokens = _tokens(50)
    with torch.no_grad():
        expected = hf(input_ids=tokens)
        hidden, pooled = ours(tokens)
        torch.testing.assert_close(hidden, expected.last_hidden_state, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours.project(pooled), expected.text_embeds, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="missing \\['text_projection.weight'\\]"):
        convert_hf_clip_text_state_dict(CLIPTextModel(config).state_dict(), 2, projection=True)
    with pytest.raises(ValueError, match="projection_dim=None: it has no text projection"):
        TextEncoder(TINY).project(torch.zeros(1, 32))
