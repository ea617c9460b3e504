"""Tests for kwlab.allocator: glibc's malloc is told to keep freed memory (where the C library is glibc)."""

from __future__ import annotations

import platform

import pytest

from kwlab.allocator import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt tuning applies to glibc only")
def test_glibc_takes_the_setting_and_a_second_call_is_a_no_op():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
