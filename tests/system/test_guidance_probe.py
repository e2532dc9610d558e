"""benchmarks/guidance.py's stand-in for guidance: it must do what its report says it does."""
import torch

from guidance import Guidance, implausible      # benchmarks/guidance.py (pytest's pythonpath: pyproject.toml)


def test_guidance_only_for_the_first_steps_of_each_clip():
    torch.manual_seed(0)
    cond, uncond = torch.randn(2, 4, 1, 8), torch.randn(2, 4, 1, 8)      # [B, K, T, codebook_size]
    guided = cond + 2 * (cond - uncond)
    probe = Guidance(steps_per_clip=5, ramp=4, first_steps=2)
    outs = [probe(cond, uncond, 3.0) for _ in range(10)]                  # two clips of 5 decoding steps
    for i, out in enumerate(outs):
        torch.testing.assert_close(out, guided if i % 5 < 2 else cond)
    assert len(probe.mass) == 2                                           # steps 4 and 9: past the ramp


def test_plausible_only_drops_what_the_conditional_lm_finds_unlikely():
    cond = torch.log(torch.tensor([[[[0.5, 0.3, 0.149, 0.001, 0.05]]]]))  # 0.001 and 0.05 < 0.1 * 0.5
    uncond = torch.log(torch.tensor([[[[0.5, 0.3, 0.149, 0.0001, 0.05]]]]))
    assert implausible(cond).tolist() == [[[[False, False, False, True, True]]]]
    out = Guidance(steps_per_clip=1, ramp=0, plausible_only=True)(cond, uncond, 3.0)
    assert torch.isinf(out[..., 3:]).all() and torch.isfinite(out[..., :3]).all()
    assert out.softmax(-1)[..., 3:].sum() == 0                            # the token guidance boosted most is gone
