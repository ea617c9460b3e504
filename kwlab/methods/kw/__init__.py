"""KernelWarehouse (Li & Yao, ICML 2024): config, planner, attention, warehouse, layers, fast paths, converter."""
