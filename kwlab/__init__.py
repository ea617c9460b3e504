"""kwlab: an ablation and sweep platform for KernelWarehouse dynamic convolution (Li & Yao, ICML 2024)."""

from kwlab.methods import METHODS, build_model, price_model, register_method
from kwlab.methods.kw.config import KWConfig
from kwlab.methods.kw.converter import convert, create_model, plan
from kwlab.methods.kw.functions import ATTENTION_FUNCTIONS, register_attention
from kwlab.methods.kw.layers import KWConv1d, KWConv2d, KWConv3d, KWLinear
from kwlab.methods.kw.reference_checkpoint import load_reference_checkpoint
from kwlab.methods.temperature import LinearAnneal as TemperatureSchedule
from kwlab.methods.temperature import set_temperature
from kwlab.methods.kw.warehouse import Warehouse

__version__ = "0.1.0"
__all__ = [
    "ATTENTION_FUNCTIONS", "KWConfig", "KWConv1d", "KWConv2d", "KWConv3d", "KWLinear", "METHODS", "TemperatureSchedule",
    "Warehouse", "build_model", "convert", "create_model", "load_reference_checkpoint", "plan", "price_model",
    "register_attention", "register_method", "set_temperature",
]
