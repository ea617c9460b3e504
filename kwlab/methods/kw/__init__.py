"""The KernelWarehouse method: config, planner, attention functions, assembly math, warehouse, layers, temperature."""
