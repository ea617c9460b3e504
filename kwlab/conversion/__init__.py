"""Converting models to KernelWarehouse: layouts (stage/role rules) and the converter."""

from kwlab.conversion.converter import convert, create_model, plan

__all__ = ["convert", "create_model", "plan"]
