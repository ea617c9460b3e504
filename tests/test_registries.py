"""Every registry follows one pattern: a decorator adds an entry, a listing names them, and an unknown name is a
one-line error, under the config key a user writes it in, that lists the known names."""

from __future__ import annotations

import pytest

import kwlab
from kwlab.data.registry import DATASETS
from kwlab.errors import KWLabError
from kwlab.methods.kw.sharing import SHARING_RULES
from kwlab.train import TrainConfig

REGISTRIES = {"kw.attention": kwlab.ATTENTION_FUNCTIONS, "method": kwlab.METHODS, "data.name": DATASETS,
              "kw.sharing": SHARING_RULES}


@pytest.mark.parametrize("key", REGISTRIES)
def test_an_unknown_name_lists_the_known_ones(key: str) -> None:
    registry = REGISTRIES[key]
    assert registry.names() == sorted(registry.names()) and len(registry.names()) >= 3
    with pytest.raises(KWLabError) as error:
        registry.get("nope")
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{key}: 'nope' is not one of")
    assert all(repr(name) in message for name in registry.names())


@pytest.mark.parametrize(("tree", "key"), [({"method": "nope"}, "method"), ({"kw": {"attention": "nope"}}, "kw.attention"),
                                           ({"data": {"name": "nope"}}, "data.name")])
def test_a_trial_config_with_an_unknown_name_is_one_line(tree: dict, key: str) -> None:
    with pytest.raises(KWLabError) as error:
        TrainConfig.from_dict(tree)
    assert "\n" not in str(error.value) and str(error.value).startswith(f"{key}: 'nope' is not one of")


@pytest.mark.parametrize("key", REGISTRIES)
def test_a_name_is_registered_once(key: str) -> None:
    registry, first = REGISTRIES[key], REGISTRIES[key].get(REGISTRIES[key].names()[0])
    name = registry.names()[0]
    with pytest.warns(UserWarning, match="already registered; keeping the first"):
        registry.register(name)(object())
    assert registry.get(name) is first
