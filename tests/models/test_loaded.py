"""What a loaded model says about itself (actpatch.models.loaded): its tokens, BOS first as
TransformerLens, and TransformerLens's bridge, which leaves the weights as loaded."""

import actpatch


def test_bos_token_first_as_transformer_lens(tiny_model):
    assert tiny_model.to_tokens(" France") == [50256, 4881]
    assert tiny_model.bridge().to_tokens(" France").tolist() == [[50256, 4881]]


def test_the_bridge_leaves_the_weights_as_loaded(tmp_path):
    """TransformerLens's bridge wraps the model in place; it must not rewrite its weights
    (the fast path reads the same tensors, before or after the bridge exists)."""
    import torch

    from actpatch.arch import load
    from tests.tiny_families import save_family

    def weights(hf_model):  # names as Hugging Face gives them, wrapped by the bridge or not
        return {
            n.replace("._original_component", ""): p.detach().clone()
            for n, p in hf_model.named_parameters()
        }

    model = actpatch.load_model(str(save_family("llama", tmp_path / "llama")))
    tokens = torch.tensor([model.to_tokens("When Mary and John went to the store")])
    before = weights(model.hf_model)
    with torch.no_grad():
        reference = model.hf_model(tokens).logits[:, -1]
        model.bridge()
        after = weights(model.hf_model)
        assert before.keys() <= after.keys()
        assert all(torch.equal(before[n], after[n]) for n in before)
        final, _ = load(model.hf_model).run_with_cache(tokens, [])
    assert (load(model.hf_model).unembed(final) - reference).abs().max() < 1e-4


def test_building_the_bridge_changes_neither_the_count_nor_the_fingerprint(tiny_model_dir):
    """TransformerLens's bridge wraps the modules in place and adds split copies of GPT-2's fused
    c_attn; the model's own weights (what workers compare) stay what was loaded."""
    from transformers import AutoModelForCausalLM

    import actpatch
    from actpatch.patching.remote import fingerprint

    model = actpatch.load_model(str(tiny_model_dir))
    before = fingerprint(model)
    model.bridge()
    fresh = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    assert model.n_params == fresh.num_parameters()
    assert fingerprint(model) == before


def test_a_model_prints_as_its_name_and_shape_not_its_module_tree(tiny_model):
    config = tiny_model.hf_model.config
    shown = repr(tiny_model)
    assert shown.startswith(f"LoadedModel({tiny_model.name!r}, {config.model_type}, ")
    assert f"{config.num_hidden_layers} layers x {config.num_attention_heads} heads" in shown
    assert "cpu" in shown and "Linear(" not in str(shown) and len(shown) < 200
    assert "Linear(" in repr(tiny_model.hf_model)  # the tree is still there, where it was
