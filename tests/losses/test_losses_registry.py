import pytest

from unime_hf.losses import (
    LOSSES,
    get_loss,
    hard_negative_ce_loss,
    info_nce_loss,
    js_divergence_loss,
    symmetric_kl_loss,
)


def test_registry_maps_names_to_functions():
    assert LOSSES == {
        "symmetric_kl": symmetric_kl_loss,
        "js": js_divergence_loss,
        "info_nce": info_nce_loss,
        "hard_negative_ce": hard_negative_ce_loss,
    }
    for name, fn in LOSSES.items():
        assert get_loss(name) is fn


def test_get_loss_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="Unknown loss 'kl'") as excinfo:
        get_loss("kl")
    for name in LOSSES:
        assert name in str(excinfo.value)
