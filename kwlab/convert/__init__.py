"""Converting models to KernelWarehouse: layouts (stage/role rules) and the converter."""

from kwlab.convert.converter import convert, create_model, plan

__all__ = ["convert", "create_model", "plan"]
