import numpy as np
import torch

from dhkd.methods.dhkd.flow import FeatureFlow, FlowTeacher, flow_nll, positional_encoding


def _perturb(flow: FeatureFlow, scale: float) -> None:
    """Move the zero-initialised subnet outputs so the flow is not the identity."""
    for p in flow.parameters():
        if p.requires_grad:  # the fixed permutation matrices stay permutations
            p.data.add_(scale * torch.randn_like(p))


def _flow(pos_enc: bool, clamp: float = 2.0) -> FeatureFlow:
    torch.manual_seed(0)
    np.random.seed(0)
    flow = FeatureFlow(6, 8, 8, depth=4, clamp=clamp, hidden_ratio=1.0, pos_enc=pos_enc)
    _perturb(flow, 0.05)
    return flow.eval()


def test_flow_is_invertible_with_and_without_positional_condition():
    x = torch.randn(3, 6, 8, 8)
    for pos_enc in (False, True):
        flow = _flow(pos_enc)
        with torch.no_grad():
            z, _ = flow(x)
            x_back, _ = flow(z, rev=True)
        assert not torch.allclose(z, x, atol=1e-3)
        assert torch.allclose(x_back, x, atol=1e-4)


def test_forward_and_reverse_log_determinants_cancel():
    flow = _flow(True)
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        z, jac_fwd = flow(x)
        _, jac_rev = flow(z, rev=True)
    assert jac_fwd.shape == (2,)
    assert torch.allclose(jac_fwd + jac_rev, torch.zeros(2), atol=1e-3)


def test_log_determinant_matches_autograd_jacobian():
    torch.manual_seed(1)
    flow = FeatureFlow(2, 2, 2, depth=2, hidden_ratio=4.0)
    _perturb(flow, 0.1)
    flow.eval()
    x = torch.randn(1, 2, 2, 2)
    jac = torch.autograd.functional.jacobian(
        lambda v: flow(v.view(1, 2, 2, 2))[0].flatten(), x.flatten()
    )
    _, log_det = flow(x)
    assert torch.allclose(torch.linalg.slogdet(jac)[1], log_det[0], atol=1e-4)


def test_nll_is_per_dimension_and_teacher_handles_levels():
    z = torch.zeros(4, 3, 2, 2)
    assert flow_nll(z, torch.full((4,), 12.0)) == -1.0
    teacher = FlowTeacher([(4, 8, 8), (6, 4, 4)], depth=2)
    zs, jacs = teacher([torch.randn(2, 4, 8, 8), torch.randn(2, 6, 4, 4)])
    assert [tuple(z.shape) for z in zs] == [(2, 4, 8, 8), (2, 6, 4, 4)]
    assert [tuple(j.shape) for j in jacs] == [(2,), (2,)]


def test_positional_encoding_varies_over_rows_and_columns():
    enc = positional_encoding(8, 5, 7)
    assert enc.shape == (8, 5, 7)
    assert not torch.allclose(enc[:, 0], enc[:, 1])
    assert not torch.allclose(enc[:, :, 0], enc[:, :, 1])


def test_clamp_switch_changes_the_transform():
    x = 3 * torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        z_wide, _ = _flow(False, clamp=2.0)(x)
        z_tight, _ = _flow(False, clamp=0.05)(x)
    assert not torch.allclose(z_wide, z_tight, atol=1e-3)
