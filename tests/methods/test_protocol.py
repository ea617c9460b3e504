"""The method protocol (kwlab.methods.protocol): an abstract base class, checked when a method is registered."""

from __future__ import annotations

import pytest
from torch import nn

from kwlab.errors import KWLabError
from kwlab.methods import METHODS, Method, register_method
from kwlab.methods.static import Static


def test_a_method_lacking_price_fails_at_registration_with_one_line() -> None:
    with pytest.raises(KWLabError) as error:
        @register_method("no_price")
        class NoPrice(Method):
            def convert(self, model: nn.Module, settings: None) -> nn.Module:
                return model

    assert str(error.value) == "register_method('no_price'): NoPrice does not define price, which every method must"
    assert "no_price" not in METHODS


def test_registration_refuses_what_is_not_a_method_and_bad_settings() -> None:
    with pytest.raises(KWLabError, match="not a subclass of kwlab.methods.Method"):
        register_method("plain_class")(type("Plain", (), {}))
    with pytest.raises(KWLabError, match="settings must be a kwlab.config.Config subclass"):
        register_method("bad_settings")(type("BadSettings", (Static,), {"settings": dict}))
    assert "plain_class" not in METHODS and "bad_settings" not in METHODS


def test_a_complete_method_registers() -> None:
    register_method("static_copy")(type("StaticCopy", (Static,), {}))
    try:
        assert METHODS.get("static_copy").name == "static_copy"
    finally:
        del METHODS["static_copy"]
